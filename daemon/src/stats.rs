//! Counters shared by every stage of `hark run`, and the `stats` message built from them.
//! Counters are relaxed atomics (some have several writers, e.g. `rejected_commands`); readers
//! take a relaxed snapshot, exact for each counter, not across counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

/// Live counters.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    /// Mono samples the source delivered into the ring.
    pub samples_in: AtomicU64,
    /// Mono samples the ring had no room for (the DSP thread fell behind the device).
    pub ring_overruns: AtomicU64,
    /// The capture device failed or fell silent and is not back yet.
    pub source_lost: AtomicBool,
    /// Times the capture device was lost.
    pub source_losses: AtomicU64,
    /// Windows assembled by the DSP thread.
    pub windows: AtomicU64,
    /// Windows dropped because inference was behind (drop-oldest queue).
    pub skipped_windows: AtomicU64,
    /// Windows below the silence threshold (no inference, no caption).
    pub silent_windows: AtomicU64,
    /// Windows that arrived while paused.
    pub paused_windows: AtomicU64,
    /// Windows whose inference failed (logged).
    pub failed_windows: AtomicU64,
    /// Captions suppressed as repeats within the hold time.
    pub deduplicated: AtomicU64,
    /// Speech windows published as "people are talking" (`privacy.speech = "redact"`).
    pub speech_redacted: AtomicU64,
    /// Speech windows not published (`privacy.speech = "drop"`).
    pub speech_dropped: AtomicU64,
    /// Captions made (handed to the outbox).
    pub captions: AtomicU64,
    /// Captions and trigger messages dropped from the full outbox: the sink was not taking
    /// them (live sources only; replayed audio waits instead).
    pub dropped_captions: AtomicU64,
    /// Windows waiting for inference right now.
    pub queue_depth: AtomicU64,
    /// Audio captioned, microseconds, and the inference time it took (for the real-time factor).
    pub audio_us: AtomicU64,
    /// Inference time, microseconds.
    pub inference_us: AtomicU64,
    /// Heartbeats of the DSP and inference threads: the watchdog pings only while both move.
    pub dsp_beats: AtomicU64,
    /// See `dsp_beats`.
    pub inference_beats: AtomicU64,
    /// `set` commands refused (malformed, unknown, too large, retained), answered on `error`.
    pub rejected_commands: AtomicU64,
    /// Captioning is paused by a `set` command.
    pub paused: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            samples_in: AtomicU64::new(0),
            ring_overruns: AtomicU64::new(0),
            source_lost: AtomicBool::new(false),
            source_losses: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            skipped_windows: AtomicU64::new(0),
            silent_windows: AtomicU64::new(0),
            paused_windows: AtomicU64::new(0),
            failed_windows: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            speech_redacted: AtomicU64::new(0),
            speech_dropped: AtomicU64::new(0),
            captions: AtomicU64::new(0),
            dropped_captions: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            audio_us: AtomicU64::new(0),
            inference_us: AtomicU64::new(0),
            dsp_beats: AtomicU64::new(0),
            inference_beats: AtomicU64::new(0),
            rejected_commands: AtomicU64::new(0),
            paused: AtomicBool::new(false),
        }
    }
}

/// The `stats` payload (docs/schema/stats.schema.json).
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Payload version.
    pub v: u32,
    /// Device id.
    pub device: String,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Audio received, seconds (at the source's rate).
    pub audio_s: f64,
    /// See [`Counters`].
    pub windows: u64,
    /// See [`Counters`].
    pub captions: u64,
    /// See [`Counters`].
    pub dropped_captions: u64,
    /// See [`Counters`].
    pub skipped_windows: u64,
    /// See [`Counters`].
    pub silent_windows: u64,
    /// See [`Counters`].
    pub paused_windows: u64,
    /// See [`Counters`].
    pub failed_windows: u64,
    /// See [`Counters`].
    pub deduplicated: u64,
    /// See [`Counters`].
    pub speech_redacted: u64,
    /// See [`Counters`].
    pub speech_dropped: u64,
    /// See [`Counters`].
    pub ring_overruns: u64,
    /// See [`Counters`].
    pub source_lost: bool,
    /// See [`Counters`].
    pub source_losses: u64,
    /// Inference time / audio duration of the captioned windows (< 1 keeps up).
    pub rtf: f64,
    /// See [`Counters`].
    pub queue_depth: u64,
    /// Resident memory, bytes (0 where /proc is unavailable).
    pub rss_bytes: u64,
    /// `set` commands refused.
    pub rejected_commands: u64,
    /// Captioning paused.
    pub paused: bool,
    /// Model name.
    pub model: String,
    /// hark's version, as `hark --version`, the .deb and Home Assistant's device show it.
    pub version: &'static str,
    /// Decoding strategy in effect.
    pub strategy: String,
}

impl Counters {
    /// A snapshot for the `stats` topic.
    pub fn snapshot(&self, device: &str, source_rate: u32, model: &str, strategy: &str) -> Stats {
        let audio_us = self.audio_us.load(Relaxed);
        Stats {
            v: 2,
            device: device.to_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            audio_s: self.samples_in.load(Relaxed) as f64 / f64::from(source_rate.max(1)),
            windows: self.windows.load(Relaxed),
            captions: self.captions.load(Relaxed),
            dropped_captions: self.dropped_captions.load(Relaxed),
            skipped_windows: self.skipped_windows.load(Relaxed),
            silent_windows: self.silent_windows.load(Relaxed),
            paused_windows: self.paused_windows.load(Relaxed),
            failed_windows: self.failed_windows.load(Relaxed),
            deduplicated: self.deduplicated.load(Relaxed),
            speech_redacted: self.speech_redacted.load(Relaxed),
            speech_dropped: self.speech_dropped.load(Relaxed),
            ring_overruns: self.ring_overruns.load(Relaxed),
            source_lost: self.source_lost.load(Relaxed),
            source_losses: self.source_losses.load(Relaxed),
            rtf: if audio_us == 0 {
                0.0
            } else {
                self.inference_us.load(Relaxed) as f64 / audio_us as f64
            },
            queue_depth: self.queue_depth.load(Relaxed),
            rss_bytes: rss_bytes(),
            rejected_commands: self.rejected_commands.load(Relaxed),
            paused: self.paused.load(Relaxed),
            model: model.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            strategy: strategy.to_string(),
        }
    }
}

/// Resident set size, from the `VmRSS` line of /proc/self/status (page-size independent:
/// the Pi 5 kernel uses 16 KiB pages).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
