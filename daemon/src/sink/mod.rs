//! Where captions go and what comes back: the MQTT client (`mqtt`, its reconnect rules in
//! `reconnect`), the events it and stdout
//! publish (`events`), `set` commands from the broker (`commands`) and the counters of
//! `stats`.

pub mod commands;
pub mod events;
pub mod mqtt;
pub mod reconnect;
pub mod stats;
