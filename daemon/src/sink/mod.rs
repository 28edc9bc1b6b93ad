//! Where captions go and what comes back: the MQTT client (`mqtt`, its reconnect rules in
//! `reconnect`) and the `set` commands it receives (`commands`). The events published are the
//! pipeline's (`pipeline::events`); the counters behind `stats` are everyone's (`crate::stats`).

pub mod commands;
pub mod mqtt;
pub mod reconnect;
