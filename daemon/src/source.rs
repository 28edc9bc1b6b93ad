//! Audio sources. Each one runs on its own thread (or in cpal's callback) and does one thing:
//! downmix to mono f32 and push into the capture ring, the single-producer single-consumer
//! buffer that the DSP thread drains.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::HeapProd;
use ringbuf::traits::Producer;

use crate::config::{PcmFormat, SourceConfig};
use crate::stats::Counters;

/// The writing end of the capture ring.
pub struct RingWriter {
    producer: HeapProd<f32>,
    counters: Arc<Counters>,
    /// Samples still to accept (a timed capture); `u64::MAX` = unlimited.
    remaining: u64,
}

impl RingWriter {
    /// Wraps the ring's producer.
    pub fn new(producer: HeapProd<f32>, counters: Arc<Counters>) -> Self {
        Self {
            producer,
            counters,
            remaining: u64::MAX,
        }
    }

    /// Accepts at most `limit` samples, then ignores the rest.
    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.remaining = limit.unwrap_or(u64::MAX);
        self
    }

    /// Real-time push from an audio callback: downmixes `data` (interleaved, `channels`)
    /// into the ring without allocating, locking or blocking; frames that do not fit are
    /// dropped and counted as overruns.
    pub fn push_live<T: Copy>(&mut self, data: &[T], channels: usize, to_f32: impl Fn(T) -> f32) {
        let frames = (data.len() / channels).min(self.remaining.try_into().unwrap_or(usize::MAX));
        self.remaining -= frames as u64;
        let data = &data[..frames * channels];
        let scale = 1.0 / channels as f32;
        let mono = data
            .chunks_exact(channels)
            .map(|f| f.iter().map(|&s| to_f32(s)).sum::<f32>() * scale);
        let pushed = self.producer.push_iter(mono);
        self.counters.samples_in.fetch_add(pushed as u64, Relaxed);
        if pushed < frames {
            self.counters
                .ring_overruns
                .fetch_add((frames - pushed) as u64, Relaxed);
        }
    }

    /// Push from a replay source: waits for room instead of dropping. Returns false if
    /// `stop` was raised first.
    pub fn push_wait(&mut self, mut mono: &[f32], stop: &AtomicBool) -> bool {
        while !mono.is_empty() {
            let n = self.producer.push_slice(mono);
            self.counters.samples_in.fetch_add(n as u64, Relaxed);
            mono = &mono[n..];
            if !mono.is_empty() {
                if stop.load(Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        true
    }
}

/// An opened source: its rate is known before any audio flows, so the DSP thread can build
/// its resampler.
pub trait Source: Send {
    /// For logs: what is being listened to.
    fn describe(&self) -> String;
    /// Mono sample rate delivered into the ring, Hz.
    fn sample_rate(&self) -> u32;
    /// Delivers audio until the stream ends (Ok), `stop` is raised (Ok) or it fails (Err).
    fn run(self: Box<Self>, ring: RingWriter, stop: &AtomicBool) -> Result<()>;
}

/// Opens the configured source. `preferred_rate` is the model's rate, asked of devices
/// that can choose.
pub fn open(cfg: &SourceConfig, preferred_rate: u32) -> Result<Box<dyn Source>> {
    Ok(match cfg {
        SourceConfig::Microphone {
            device,
            sample_rate,
            max_seconds,
        } => Box::new(Microphone::open(
            device.as_deref(),
            sample_rate.unwrap_or(preferred_rate),
            *max_seconds,
        )?),
        SourceConfig::File { path, realtime } => Box::new(FileSource::open(path, *realtime)?),
        SourceConfig::Stdin {
            sample_rate,
            channels,
            format,
        } => Box::new(StdinSource {
            rate: *sample_rate,
            channels: usize::from(*channels),
            format: *format,
        }),
    })
}

/// A WAV or FLAC file, decoded as it is fed (memory does not grow with its length).
pub struct FileSource {
    path: PathBuf,
    stream: crate::wav::Stream,
    realtime: bool,
}

impl FileSource {
    fn open(path: &std::path::Path, realtime: bool) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            stream: crate::wav::Stream::open(path)?,
            realtime,
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!(
            "file {} ({:.1} s at {} Hz{})",
            self.path.display(),
            self.stream.seconds(),
            self.stream.sample_rate(),
            if self.realtime { ", real time" } else { "" }
        )
    }

    fn sample_rate(&self) -> u32 {
        self.stream.sample_rate()
    }

    fn run(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let rate = f64::from(self.stream.sample_rate());
        // 20 ms blocks: real-time pacing granularity.
        let block = (self.stream.sample_rate() as usize / 50).max(1);
        let started = Instant::now();
        let mut sent = 0usize;
        self.stream.for_each(|samples| {
            for chunk in samples.chunks(block) {
                if self.realtime {
                    let due = Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                if stop.load(Relaxed) || !ring.push_wait(chunk, stop) {
                    return false;
                }
                sent += chunk.len();
            }
            true
        })
    }
}

/// Raw interleaved little-endian PCM on standard input, until end of file.
pub struct StdinSource {
    rate: u32,
    channels: usize,
    format: PcmFormat,
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        format!(
            "stdin ({:?}, {} channel(s) at {} Hz)",
            self.format, self.channels, self.rate
        )
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn run(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let width = match self.format {
            PcmFormat::S16le => 2,
            PcmFormat::F32le => 4,
        };
        let frame_bytes = width * self.channels;
        let mut stdin = std::io::stdin().lock();
        let mut bytes = vec![0u8; frame_bytes * 1024];
        let mut filled = 0;
        let mut mono = Vec::with_capacity(1024);
        while !stop.load(Relaxed) {
            let n = match stdin.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read audio from stdin"),
            };
            filled += n;
            let whole = filled / frame_bytes * frame_bytes;
            mono.clear();
            mono.extend(bytes[..whole].chunks_exact(frame_bytes).map(|frame| {
                let sum: f32 = frame
                    .chunks_exact(width)
                    .map(|s| match self.format {
                        PcmFormat::S16le => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0,
                        PcmFormat::F32le => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                    })
                    .sum();
                sum / self.channels as f32
            }));
            bytes.copy_within(whole..filled, 0);
            filled -= whole;
            if !ring.push_wait(&mono, stop) {
                break;
            }
        }
        if filled > 0 {
            log::warn!("stdin ended inside a sample frame: {filled} trailing byte(s) ignored");
        }
        Ok(())
    }
}

/// A capture device through cpal.
pub struct Microphone {
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

impl Microphone {
    fn open(wanted: Option<&str>, rate: u32, max_seconds: Option<f32>) -> Result<Self> {
        let host = cpal::default_host();
        let device = match wanted {
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
        };
        let (id, description) = device_label(&device);
        let name = if description.is_empty() {
            id
        } else {
            format!("{id} ({description})")
        };
        let config = negotiate(&device, rate)
            .with_context(|| format!("capture device {name} offers no usable input format"))?;
        Ok(Self {
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

    fn run(self: Box<Self>, ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        use cpal::SampleFormat as F;
        let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let on_error = {
            let failed = failed.clone();
            move |e: cpal::Error| {
                // Not the real-time path: cpal reports errors from its own thread.
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert(e.to_string());
                }
            }
        };
        let channels = usize::from(self.config.channels());
        let stream_config = self.config.config();
        let limit = self
            .max_seconds
            .map(|s| (f64::from(s) * f64::from(self.config.sample_rate())).round() as u64);
        let mut ring = ring.with_limit(limit);
        let counters = Arc::clone(&ring.counters);
        let stream = match self.config.sample_format() {
            F::I16 => self.device.build_input_stream(
                stream_config,
                move |d: &[i16], _: &_| ring.push_live(d, channels, |s| f32::from(s) / 32768.0),
                on_error,
                None,
            ),
            F::F32 => self.device.build_input_stream(
                stream_config,
                move |d: &[f32], _: &_| ring.push_live(d, channels, |s| s),
                on_error,
                None,
            ),
            F::I32 => self.device.build_input_stream(
                stream_config,
                move |d: &[i32], _: &_| ring.push_live(d, channels, |s| s as f32 / 2_147_483_648.0),
                on_error,
                None,
            ),
            F::U16 => self.device.build_input_stream(
                stream_config,
                move |d: &[u16], _: &_| {
                    ring.push_live(d, channels, |s| (f32::from(s) - 32768.0) / 32768.0)
                },
                on_error,
                None,
            ),
            F::I8 => self.device.build_input_stream(
                stream_config,
                move |d: &[i8], _: &_| ring.push_live(d, channels, |s| f32::from(s) / 128.0),
                on_error,
                None,
            ),
            F::U8 => self.device.build_input_stream(
                stream_config,
                move |d: &[u8], _: &_| {
                    ring.push_live(d, channels, |s| (f32::from(s) - 128.0) / 128.0)
                },
                on_error,
                None,
            ),
            other => bail!("{}: sample format {other} is not supported", self.name),
        }
        .with_context(|| format!("cannot open capture device {}", self.name))?;
        stream
            .play()
            .with_context(|| format!("cannot start capture on {}", self.name))?;
        let started = Instant::now();
        let (mut last_seen, mut last_change) = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if stop.load(Relaxed) {
                return Ok(());
            }
            if let Some(e) = failed.lock().ok().and_then(|f| f.clone()) {
                bail!(
                    "capture device {} failed: {e}; check that it is still connected (`hark devices`)",
                    self.name
                );
            }
            let seen = counters.samples_in.load(Relaxed) + counters.ring_overruns.load(Relaxed);
            if limit.is_some_and(|l| seen >= l) {
                return Ok(());
            }
            if seen != last_seen {
                (last_seen, last_change) = (seen, Instant::now());
            } else if last_change.elapsed() > STALL {
                bail!(
                    "capture device {} delivered no audio for {} s (after {:.1} s of capture); \
                     check that it is still connected (`hark devices`)",
                    self.name,
                    STALL.as_secs(),
                    started.elapsed().as_secs_f32()
                );
            }
        }
    }
}

/// A device that delivers nothing for this long has gone away.
const STALL: Duration = Duration::from_secs(5);
