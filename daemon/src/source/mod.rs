//! Audio sources. Each one runs on its own thread (or in cpal's callback) and does one thing:
//! downmix to mono f32 and push into the capture ring, the single-producer single-consumer
//! buffer that the DSP thread drains.

pub mod audio_file;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
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
    fn capture(self: Box<Self>, ring: RingWriter, stop: &AtomicBool) -> Result<()>;
}

/// Opens the configured source. `preferred_rate` is the model's rate, asked of devices
/// Checks what can be checked of a configured source before anything starts: a file source's
/// header (the microphone and stdin are found when they are opened).
pub fn check(cfg: &SourceConfig) -> Result<()> {
    if let SourceConfig::File { path, .. } = cfg {
        audio_file::check(path).map_err(|e| anyhow::anyhow!("source.path: {e:#}"))?;
    }
    Ok(())
}

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

/// An audio file, decoded as it is fed (memory does not grow with its length).
pub struct FileSource {
    path: PathBuf,
    stream: crate::source::audio_file::Stream,
    realtime: bool,
}

impl FileSource {
    fn open(path: &std::path::Path, realtime: bool) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            stream: crate::source::audio_file::Stream::open(path)?,
            realtime,
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!(
            "file {} ({} at {} Hz{})",
            self.path.display(),
            self.stream
                .seconds()
                .map_or("length unknown".into(), |s| format!("{s:.1} s")),
            self.stream.sample_rate(),
            if self.realtime { ", real time" } else { "" }
        )
    }

    fn sample_rate(&self) -> u32 {
        self.stream.sample_rate()
    }

    fn capture(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
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

    fn capture(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let mut stdin = std::io::stdin().lock();
        let watch = StdinWatch::new(Arc::clone(&ring.counters));
        std::thread::scope(|scope| {
            scope.spawn(|| watch.run(stop));
            let read = self.read_stdin(&mut stdin, &mut ring, stop, &watch);
            watch.done.store(true, Relaxed);
            read
        })
    }
}

impl StdinSource {
    fn read_stdin(
        &self,
        stdin: &mut impl Read,
        ring: &mut RingWriter,
        stop: &AtomicBool,
        watch: &StdinWatch,
    ) -> Result<()> {
        let width = match self.format {
            PcmFormat::S16le => 2,
            PcmFormat::F32le => 4,
        };
        let frame_bytes = width * self.channels;
        let mut bytes = vec![0u8; frame_bytes * 1024];
        let mut filled = 0;
        let mut mono = Vec::with_capacity(1024);
        while !stop.load(Relaxed) {
            watch.reading(true);
            let read = stdin.read(&mut bytes[filled..]);
            watch.reading(false);
            let n = match read {
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

/// Notices a producer that stops writing to stdin without closing it (a stalled pipe or FIFO):
/// after STALL inside one read, `source_lost` in stats and a warning; when audio comes again,
/// both cleared. Time spent waiting for room in the ring is back-pressure, not a stall.
struct StdinWatch {
    counters: Arc<Counters>,
    /// When the read now blocked began (ms since `t0`, plus one); 0 between reads.
    reading_since: AtomicU64,
    t0: Instant,
    done: AtomicBool,
}

impl StdinWatch {
    fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            reading_since: AtomicU64::new(0),
            t0: Instant::now(),
            done: AtomicBool::new(false),
        }
    }

    fn reading(&self, now: bool) {
        let since = if now {
            self.t0.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.reading_since.store(since, Relaxed);
    }

    fn run(&self, stop: &AtomicBool) {
        let mut lost = false;
        while !self.done.load(Relaxed) && !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let since = self.reading_since.load(Relaxed);
            let stalled = since != 0
                && self.t0.elapsed().as_millis() as u64 + 1 - since > STALL.as_millis() as u64;
            if stalled && !lost {
                self.counters.source_lost.store(true, Relaxed);
                self.counters.source_losses.fetch_add(1, Relaxed);
                log::warn!(
                    "no audio on stdin for {} s (it is still open): is its producer stalled? \
                     hark keeps waiting for it",
                    STALL.as_secs()
                );
            } else if !stalled && lost {
                self.counters.source_lost.store(false, Relaxed);
                log::info!("audio on stdin again");
            }
            lost = stalled;
        }
    }
}

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
    fn open(wanted: Option<&str>, rate: u32, max_seconds: Option<f32>) -> Result<Self> {
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

/// A device that delivers nothing for this long has gone away.
const STALL: Duration = Duration::from_secs(5);
/// How often a lost device is looked for.
const REOPEN: Duration = Duration::from_secs(2);
