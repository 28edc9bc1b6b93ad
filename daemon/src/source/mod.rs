//! Audio sources. Each one runs on its own thread (or in cpal's callback) and does one thing:
//! downmix to mono f32 and push into the capture ring (`ring.rs`), the single-producer
//! single-consumer buffer that the DSP thread drains: a microphone through cpal
//! (`microphone.rs`), an audio file (`file.rs`, decoded by `audio_file.rs`) or raw PCM on
//! standard input (`stdin.rs`).

pub mod audio_file;
mod file;
mod microphone;
pub mod ring;
mod stdin;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Result;

use crate::config::SourceConfig;
pub use microphone::devices;
pub use ring::RingWriter;

/// An opened source: its rate is known before any audio flows, so the DSP thread can build
/// its resampler.
pub trait Source: Send {
    /// For logs: what is being listened to.
    fn describe(&self) -> String;
    /// Mono sample rate delivered into the ring, Hz.
    fn sample_rate(&self) -> u32;
    /// Delivers audio until the stream ends (Ok), `stop` is raised (Ok) or it fails (Err).
    fn capture(self: Box<Self>, ring: RingWriter, stop: &AtomicBool) -> Result<()>;
}

/// Checks what can be checked of a configured source before anything starts: a file source's
/// header (the microphone and stdin are found when they are opened).
pub fn check(cfg: &SourceConfig) -> Result<()> {
    if let SourceConfig::File { path, .. } = cfg {
        audio_file::check(path).map_err(|e| anyhow::anyhow!("source.path: {e:#}"))?;
    }
    Ok(())
}

/// Opens the configured source. `preferred_rate` is the model's rate, asked of devices
/// that can choose.
pub fn open(cfg: &SourceConfig, preferred_rate: u32) -> Result<Box<dyn Source>> {
    Ok(match cfg {
        SourceConfig::Microphone {
            device,
            sample_rate,
            max_seconds,
        } => Box::new(microphone::Microphone::open(
            device.as_deref(),
            sample_rate.unwrap_or(preferred_rate),
            *max_seconds,
        )?),
        SourceConfig::File { path, realtime } => Box::new(file::FileSource::open(path, *realtime)?),
        SourceConfig::Stdin {
            sample_rate,
            channels,
            format,
        } => Box::new(stdin::StdinSource {
            rate: *sample_rate,
            channels: usize::from(*channels),
            format: *format,
        }),
    })
}

/// A device or stdin that delivers nothing for this long has gone away.
const STALL: Duration = Duration::from_secs(5);
