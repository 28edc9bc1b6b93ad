//! A capture device through cpal as a source: found by name, its format negotiated, and
//! looked for again when it goes away.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::ring::RingWriter;
use super::{STALL, Source};
use crate::stats::Counters;

/// A capture device through cpal. When it fails or falls silent (unplugged), hark keeps
/// running: stats report `source_lost`, and the device is looked up and opened again every
/// `REOPEN` until it is back, at the same sample rate (the pipeline's resampler is built for it).
pub struct Microphone {
    /// `source.device` as configured (`None`: the default device), to find it again.
    wanted: Option<String>,
    device: cpal::Device,
    name: String,
    config: cpal::SupportedStreamConfig,
    max_seconds: Option<f32>,
}

/// `id (description)` of a device, for lists and logs.
fn device_label(device: &cpal::Device) -> (String, String) {
    let id = device
        .id()
        .map_or_else(|_| "?".to_string(), |id| id.to_string());
    let description = device
        .description()
        .map_or_else(|_| String::new(), |d| d.to_string());
    (id, description)
}

/// Every capture device: (id, description, default config).
pub fn devices() -> Result<Vec<(String, String, String)>> {
    alsa_to_log(list_devices)
}

fn list_devices() -> Result<Vec<(String, String, String)>> {
    let host = cpal::default_host();
    let default = host.default_input_device().map(|d| device_label(&d).0);
    let mut out = Vec::new();
    for device in host
        .input_devices()
        .context("cannot list capture devices (is ALSA available?)")?
    {
        let (id, description) = device_label(&device);
        let config = device.default_input_config().map_or_else(
            |e| format!("unusable: {e}"),
            |c| {
                format!(
                    "{} Hz, {} ch, {}",
                    c.sample_rate(),
                    c.channels(),
                    c.sample_format()
                )
            },
        );
        let mark = if default.as_deref() == Some(id.as_str()) {
            " (default)"
        } else {
            ""
        };
        out.push((format!("{id}{mark}"), description, config));
    }
    Ok(out)
}

/// The device `source.device` names (`None`: the default capture device).
fn find_device(wanted: Option<&str>) -> Result<cpal::Device> {
    let host = cpal::default_host();
    Ok(match wanted {
            None => host.default_input_device().context(
                "no default capture device: plug in a microphone or set source.device (see `hark devices`)",
            )?,
            Some(want) => {
                let all: Vec<cpal::Device> = host
                    .input_devices()
                    .context("cannot list capture devices")?
                    .collect();
                // An exact id (with or without the host prefix, e.g. `alsa:`) wins over
                // partial matches of ids and descriptions.
                let exact = |d: &cpal::Device| {
                    let (id, description) = device_label(d);
                    id == want || id.split_once(':').is_some_and(|(_, n)| n == want) || description == want
                };
                let partial = |d: &cpal::Device| {
                    let (id, description) = device_label(d);
                    id.contains(want) || description.contains(want)
                };
                let mut matches: Vec<&cpal::Device> = all.iter().filter(|d| exact(d)).collect();
                if matches.is_empty() {
                    matches = all.iter().filter(|d| partial(d)).collect();
                }
                match matches.as_slice() {
                    [d] => (*d).clone(),
                    [] => bail!(
                        "no capture device matches source.device = {want:?}; `hark devices` lists them"
                    ),
                    [a, b, ..] => bail!(
                        "source.device = {want:?} matches several devices ({} and {}); give more of the name",
                        device_label(a).0,
                        device_label(b).0
                    ),
                }
            }
        })
}

/// Runs `f` with alsa-lib's own messages (which it prints to stderr, as in "ALSA lib
/// pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM default", before hark's error could say what
/// they mean) caught on this thread and logged at debug level (`RUST_LOG=hark=debug`).
#[cfg(target_os = "linux")]
fn alsa_to_log<T>(f: impl FnOnce() -> T) -> T {
    // A fresh buffer per call: the thread's handler stays installed, its old buffer dropped.
    let caught = alsa::Output::local_error_handler().ok();
    let out = f();
    if let Some(caught) = caught {
        for line in caught.borrow().to_string().lines() {
            log::debug!("alsa-lib: {line}");
        }
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn alsa_to_log<T>(f: impl FnOnce() -> T) -> T {
    f()
}

impl Microphone {
    pub(super) fn open(wanted: Option<&str>, rate: u32, max_seconds: Option<f32>) -> Result<Self> {
        alsa_to_log(|| Self::find(wanted, rate, max_seconds))
    }

    fn find(wanted: Option<&str>, rate: u32, max_seconds: Option<f32>) -> Result<Self> {
        let device = find_device(wanted)?;
        let (id, description) = device_label(&device);
        let name = if description.is_empty() {
            id
        } else {
            format!("{id} ({description})")
        };
        let config = negotiate(&device, rate)
            .with_context(|| format!("capture device {name} offers no usable input format"))?;
        Ok(Self {
            wanted: wanted.map(str::to_string),
            device,
            name,
            config,
            max_seconds,
        })
    }
}

/// Picks the device's format: the wanted rate if possible, fewest channels, then i16 over
/// f32 over the rest; otherwise the device default.
fn negotiate(device: &cpal::Device, rate: u32) -> Result<cpal::SupportedStreamConfig> {
    use cpal::SampleFormat as F;
    let rank = |f: F| match f {
        F::I16 => 0,
        F::F32 => 1,
        F::I32 => 2,
        _ => 3,
    };
    let usable = |f: F| matches!(f, F::I16 | F::F32 | F::I32 | F::U16 | F::I8 | F::U8);
    let best = device
        .supported_input_configs()?
        .filter(|r| usable(r.sample_format()) && r.contains_rate(rate))
        .min_by_key(|r| (r.channels(), rank(r.sample_format())));
    match best {
        Some(range) => Ok(range.with_sample_rate(rate)),
        None => {
            let c = device.default_input_config()?;
            if !usable(c.sample_format()) {
                bail!("sample format {} is not supported", c.sample_format());
            }
            Ok(c)
        }
    }
}

impl Source for Microphone {
    fn describe(&self) -> String {
        format!(
            "microphone {} ({} Hz, {} ch, {})",
            self.name,
            self.config.sample_rate(),
            self.config.channels(),
            self.config.sample_format()
        )
    }

    fn sample_rate(&self) -> u32 {
        self.config.sample_rate()
    }

    fn capture(self: Box<Self>, ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let rate = self.config.sample_rate();
        let limit = self
            .max_seconds
            .map(|s| (f64::from(s) * f64::from(rate)).round() as u64);
        // Shared by the streams of this device, one after the other, as it comes and goes.
        let sink = Sink {
            counters: Arc::clone(&ring.counters),
            ring: Arc::new(Mutex::new(ring.with_limit(limit))),
        };
        let counters = &sink.counters;
        let mut mic = *self;
        let mut first = true;
        loop {
            let lost = match mic.capture(&sink, limit, stop) {
                Ok(Ended::Done) => return Ok(()),
                Ok(Ended::Lost(why)) => why,
                Err(e) if first => return Err(e),
                Err(e) => format!("{e:#}"),
            };
            first = false;
            counters.source_lost.store(true, Relaxed);
            counters.source_losses.fetch_add(1, Relaxed);
            log::warn!(
                "{lost}; hark keeps running and opens it again when it is back (checked every \
                 {} s)",
                REOPEN.as_secs()
            );
            mic = loop {
                if sleep_unless_stopped(REOPEN, stop) {
                    return Ok(());
                }
                match Microphone::open(mic.wanted.as_deref(), rate, mic.max_seconds) {
                    Ok(m) if m.config.sample_rate() == rate => break m,
                    Ok(m) => log::debug!(
                        "{} is back at {} Hz, not {rate} Hz: waiting",
                        m.name,
                        m.config.sample_rate()
                    ),
                    Err(e) => log::debug!("capture device not back: {e:#}"),
                }
            };
            log::info!("capture device {} is back", mic.name);
            counters.source_lost.store(false, Relaxed);
        }
    }
}

/// What each stream of a device writes into.
struct Sink {
    ring: Arc<Mutex<RingWriter>>,
    counters: Arc<Counters>,
}

/// How a capture stream ended.
enum Ended {
    /// `stop` was raised or the timed capture is complete.
    Done,
    /// The device failed or fell silent: why.
    Lost(String),
}

impl Microphone {
    /// Captures into `ring` until `stop`, the end of a timed capture, or the device's loss.
    /// Errors: the stream could not be opened or started.
    fn capture(&self, sink: &Sink, limit: Option<u64>, stop: &AtomicBool) -> Result<Ended> {
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let on_error = {
            let failed = failed.clone();
            move |e: cpal::Error| {
                // Not the real-time path: cpal reports errors from its own thread.
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert(e.to_string());
                }
            }
        };
        let counters = &sink.counters;
        // Held until capture ends: dropping the stream stops it.
        let _stream = alsa_to_log(|| {
            let stream = input_stream(&self.device, &self.config, sink, on_error)
                .with_context(|| format!("cannot open capture device {}", self.name))?;
            stream
                .play()
                .with_context(|| format!("cannot start capture on {}", self.name))?;
            anyhow::Ok(stream)
        })?;
        let started = Instant::now();
        let (mut last_seen, mut last_change) = (u64::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if stop.load(Relaxed) {
                return Ok(Ended::Done);
            }
            if let Some(e) = failed.lock().ok().and_then(|f| f.clone()) {
                return Ok(Ended::Lost(format!(
                    "capture device {} failed: {e}",
                    self.name
                )));
            }
            let seen = counters.samples_in.load(Relaxed) + counters.ring_overruns.load(Relaxed);
            if limit.is_some_and(|l| seen >= l) {
                return Ok(Ended::Done);
            }
            if seen != last_seen {
                (last_seen, last_change) = (seen, Instant::now());
            } else if last_change.elapsed() > STALL {
                return Ok(Ended::Lost(format!(
                    "capture device {} delivered no audio for {} s (after {:.1} s of capture); \
                     is it still connected? (`hark devices`)",
                    self.name,
                    STALL.as_secs(),
                    started.elapsed().as_secs_f32()
                )));
            }
        }
    }
}

/// A cpal input stream of the device's sample format, converted to f32 and pushed into the
/// sink's ring.
fn input_stream(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    sink: &Sink,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream> {
    use cpal::SampleFormat as F;
    let (d, c) = (device, config);
    match config.sample_format() {
        F::I16 => typed_stream(d, c, sink, on_error, |s: i16| f32::from(s) / 32768.0),
        F::F32 => typed_stream(d, c, sink, on_error, |s: f32| s),
        F::I32 => typed_stream(d, c, sink, on_error, |s: i32| s as f32 / 2_147_483_648.0),
        F::U16 => typed_stream(d, c, sink, on_error, |s: u16| {
            (f32::from(s) - 32768.0) / 32768.0
        }),
        F::I8 => typed_stream(d, c, sink, on_error, |s: i8| f32::from(s) / 128.0),
        F::U8 => typed_stream(d, c, sink, on_error, |s: u8| (f32::from(s) - 128.0) / 128.0),
        other => bail!("sample format {other} is not supported"),
    }
}

fn typed_stream<T: cpal::SizedSample + 'static>(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    sink: &Sink,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
    to_f32: fn(T) -> f32,
) -> Result<cpal::Stream> {
    let channels = usize::from(config.channels());
    let (ring, counters) = (sink.ring.clone(), sink.counters.clone());
    Ok(device.build_input_stream(
        config.config(),
        move |d: &[T], _: &_| match ring.try_lock() {
            Ok(mut ring) => ring.push_live(d, channels, to_f32),
            // Only while one stream replaces another: never wait in the audio callback.
            Err(_) => {
                counters
                    .ring_overruns
                    .fetch_add((d.len() / channels) as u64, Relaxed);
            }
        },
        on_error,
        None,
    )?)
}

/// Sleeps `total` in short steps; true if `stop` was raised meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < total {
        if stop.load(Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.load(Relaxed)
}

/// How often a lost device is looked for.
const REOPEN: Duration = Duration::from_secs(2);
