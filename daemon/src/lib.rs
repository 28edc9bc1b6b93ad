//! hark, the daemon: audio source -> dsp -> model -> decoding -> MQTT, one module per stage
//! (docs/ARCHITECTURE.md). A library so that the command line (main.rs) and the cargo-fuzz
//! targets (daemon/fuzz/) use the same code.

pub mod cli;
pub mod config;
pub mod decode;
pub mod fuzz;
pub mod model;
pub mod pipeline;
pub mod service;
pub mod sink;
pub mod sounds;
pub mod source;
pub mod stats;
