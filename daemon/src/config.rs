//! The daemon's configuration: a TOML file, then `HARK__SECTION__KEY` environment variables,
//! then command-line flags; validated at start with errors that name the key and the allowed
//! values. docs/CONFIG.md documents every key; `hark check-config FILE` runs these checks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Input sample rates hark accepts (sources and audio files): it resamples from any of them.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Where audio comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A capture device through cpal.
    Microphone {
        /// Device id or a unique part of its id or description (see `hark devices`);
        /// absent = the system default.
        #[serde(default)]
        device: Option<String>,
        /// Preferred capture rate in Hz (absent: the bundle's rate if the device supports
        /// it, else the device default). Audio is resampled to the bundle's rate either way.
        #[serde(default)]
        sample_rate: Option<u32>,
        /// Stop after this much audio (seconds); absent = run until stopped.
        #[serde(default)]
        max_seconds: Option<f32>,
    },
    /// An audio file (WAV, FLAC, Ogg Vorbis, MP3, AAC/M4A), read as fast as possible or paced
    /// in real time.
    File {
        /// The file.
        path: PathBuf,
        /// Deliver samples at the file's own rate instead of as fast as possible.
        #[serde(default)]
        realtime: bool,
    },
    /// Raw little-endian PCM on standard input.
    Stdin {
        /// Sample rate of the stream in Hz.
        sample_rate: u32,
        /// Interleaved channels.
        #[serde(default = "one")]
        channels: u16,
        /// `s16le` or `f32le`.
        #[serde(default)]
        format: PcmFormat,
    },
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self::Microphone {
            device: None,
            sample_rate: None,
            max_seconds: None,
        }
    }
}

impl SourceConfig {
    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Self::Microphone { device, .. } => {
                format!(
                    "microphone {}",
                    device.as_deref().unwrap_or("(system default)")
                )
            }
            Self::File { path, realtime } => format!(
                "file {}{}",
                path.display(),
                if *realtime { " (real time)" } else { "" }
            ),
            Self::Stdin {
                sample_rate,
                channels,
                format,
            } => format!("stdin, {format:?} {channels} ch at {sample_rate} Hz"),
        }
    }

    /// Live sources run at the speed of the world: when inference falls behind, windows must
    /// be dropped. Replayed sources can wait for inference instead.
    pub fn is_live(&self) -> bool {
        match self {
            Self::Microphone { .. } => true,
            Self::File { realtime, .. } => *realtime,
            Self::Stdin { .. } => false,
        }
    }
}

fn one() -> u16 {
    1
}

/// Raw PCM sample format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PcmFormat {
    /// Signed 16-bit little-endian.
    #[default]
    S16le,
    /// 32-bit float little-endian.
    F32le,
}

/// `[model]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Bundle directory; absent = the shipped default.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// Runtime: `tract` (ONNX on the CPU), `torch` (the bundle's TorchScript twin through
    /// libtorch, CUDA when available; needs a `--features tch` build) or `ort` (ONNX Runtime,
    /// for benchmarks; needs a `--features ort` build).
    #[serde(default)]
    pub backend: crate::config::Backend,
}

/// `[window]`: overrides of the bundle's caption window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Audio per caption, seconds (default: the bundle's).
    pub seconds: Option<f32>,
    /// Time between window starts, seconds (default: the bundle's).
    pub hop_seconds: Option<f32>,
}

/// `[events]`: which windows become captions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Windows whose RMS level is below this (dBFS) are silence: no caption is published.
    pub silence_dbfs: f32,
    /// An identical caption repeated within this many seconds is not published again.
    pub dedup_hold_seconds: f32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            silence_dbfs: -60.0,
            dedup_hold_seconds: 30.0,
        }
    }
}

/// `[privacy]`: what leaves the device (docs/PRIVACY.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Windows in which people speak: `caption`, `redact` ("people are talking") or `drop`.
    pub speech: crate::config::SpeechPolicy,
}

/// `[sounds]`: learned sounds (docs/SOUNDS.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoundsConfig {
    /// Their folder (default: `$STATE_DIRECTORY/sounds`, /var/lib/hark/sounds for the
    /// service; else `$XDG_STATE_HOME/hark/sounds` or `~/.local/state/hark/sounds`).
    pub dir: Option<PathBuf>,
}

/// What to do with a finished window when the inference thread is still busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop the oldest queued window and count it (bounded latency; live sources).
    DropOldest,
    /// Make the audio thread wait (nothing skipped; replayed files and pipes).
    Block,
}

/// `[pipeline]`: the queues between the threads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Windows waiting for inference, at most.
    pub queue: usize,
    /// Captions and trigger messages waiting for the sink, at most (the outbox; for MQTT in
    /// front of the client's own queue).
    pub outbox: usize,
    /// Overflow policy of both queues; default `drop_oldest` for live sources, `block`
    /// otherwise.
    pub overflow: Option<Overflow>,
    /// Capacity of the capture ring buffer, seconds of audio.
    pub ring_seconds: f32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue: 2,
            outbox: 64,
            overflow: None,
            ring_seconds: 2.0,
        }
    }
}

/// `[mqtt.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate (mutual TLS), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// `[mqtt]`: absent (or no host) = captions go to stdout as JSON lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (default 1883, or 8883 with TLS).
    #[serde(default)]
    pub port: Option<u16>,
    /// MQTT client id (default `hark-<device>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// First topic level: topics are `<prefix>/<device>/…`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// QoS of captions, status and discovery: 0, 1 or 2.
    #[serde(default = "default_qos", deserialize_with = "qos")]
    pub qos: u8,
    /// Keep-alive interval, seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS; absent = plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Publish Home Assistant MQTT discovery.
    #[serde(default = "yes")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Seconds between `stats` messages.
    #[serde(default = "default_stats_interval")]
    pub stats_interval_seconds: f32,
}

fn default_prefix() -> String {
    "hark".into()
}

fn default_qos() -> u8 {
    1
}

/// A QoS is a whole number: `1.5` is refused, not rounded to 2.
fn qos<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    struct Qos;
    impl serde::de::Visitor<'_> for Qos {
        type Value = u8;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("0, 1 or 2")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u8, E> {
            u8::try_from(v).map_err(|_| E::custom(format!("{v}: must be 0, 1 or 2")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u8, E> {
            u8::try_from(v).map_err(|_| E::custom(format!("{v}: must be 0, 1 or 2")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u8, E> {
            Err(E::custom(format!("{v}: must be 0, 1 or 2")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u8, E> {
            v.parse()
                .map_err(|_| E::custom(format!("{v:?}: must be 0, 1 or 2")))
        }
    }
    d.deserialize_any(Qos)
}
fn default_keep_alive() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_stats_interval() -> f32 {
    60.0
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Device id: the MQTT topic namespace (`hark/<device>/…`). Default: the host name.
    #[serde(default)]
    pub device: Option<String>,
    /// Audio source (default: the default microphone).
    #[serde(default)]
    pub source: SourceConfig,
    /// Model.
    #[serde(default)]
    pub model: ModelConfig,
    /// Caption window.
    #[serde(default)]
    pub window: WindowConfig,
    /// Decoding overrides: any key of the bundle manifest's `[decoding]`.
    #[serde(default)]
    pub decoding: serde_json::Map<String, serde_json::Value>,
    /// Event filtering.
    #[serde(default)]
    pub events: EventsConfig,
    /// Published tags: thresholds per tag head, Home Assistant binary sensors.
    #[serde(default)]
    pub tags: crate::config::TagConfig,
    /// What leaves the device when people speak.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Meaning-level triggers (`[[triggers]]`): named phrases that fire an MQTT message.
    #[serde(default)]
    pub triggers: Vec<TriggerConfig>,
    /// Learned sounds.
    #[serde(default)]
    pub sounds: SoundsConfig,
    /// Queues.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Broker; absent = stdout.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
}

impl Config {
    /// Builds the configuration from `file` (TOML, optional) and `HARK__…` environment
    /// variables, lets `cli` apply command-line flags, and validates the result.
    pub fn load(file: Option<&Path>, cli: impl FnOnce(&mut Config) -> Result<()>) -> Result<Self> {
        let origin = file.map_or("configuration".to_string(), |p| p.display().to_string());
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                bail!(
                    "config file {} does not exist (see docs/CONFIG.md for an example)",
                    path.display()
                );
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Values stay strings (`HARK__DEVICE=007` is "007", a user name `0123` stays `0123`);
        // numeric and boolean fields parse them when they are deserialised.
        builder = builder.add_source(
            config::Environment::with_prefix("HARK")
                .prefix_separator("__")
                .separator("__"),
        );
        let mut cfg: Config = builder
            .build()
            .and_then(|b| b.try_deserialize())
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        cli(&mut cfg)?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(cfg)
    }

    /// The device id: configured, else the host name, made safe as a topic level.
    pub fn device_id(&self) -> String {
        self.device.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let id: String = host
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if id.is_empty() { "hark".into() } else { id }
        })
    }

    /// Overflow policy in effect.
    pub fn overflow(&self) -> Overflow {
        self.pipeline.overflow.unwrap_or(if self.source.is_live() {
            Overflow::DropOldest
        } else {
            Overflow::Block
        })
    }

    /// Checks values serde cannot: ranges and combinations.
    // Long on purpose: one check per key, in the order of docs/CONFIG.md, each naming its key.
    pub fn validate(&self) -> Result<()> {
        if let Some(d) = &self.device {
            check_topic_part("device", d, true)?;
        }
        match &self.source {
            SourceConfig::Stdin {
                sample_rate,
                channels,
                ..
            } => {
                if !SAMPLE_RATES.contains(sample_rate) {
                    bail!("source.sample_rate = {sample_rate}: must be in 1000..=384000");
                }
                if *channels == 0 || *channels > 32 {
                    bail!("source.channels = {channels}: must be in 1..=32");
                }
            }
            SourceConfig::Microphone {
                sample_rate,
                max_seconds,
                ..
            } => {
                if let Some(r) = sample_rate
                    && !SAMPLE_RATES.contains(r)
                {
                    bail!("source.sample_rate = {r}: must be in 1000..=384000");
                }
                if let Some(s) = max_seconds
                    && !(s.is_finite() && *s > 0.0)
                {
                    bail!("source.max_seconds = {s}: must be a number > 0");
                }
            }
            SourceConfig::File { path, .. } => {
                if !path.is_file() {
                    bail!(
                        "source.path = {}: no such file (give an audio file: WAV, FLAC, Ogg Vorbis, MP3 or AAC/M4A)",
                        path.display()
                    );
                }
            }
        }
        if let Some(s) = self.window.seconds
            && !(s > 0.0 && s <= 600.0)
        {
            bail!("window.seconds = {s}: must be in (0, 600]");
        }
        if let Some(h) = self.window.hop_seconds
            && !(h > 0.0 && h <= self.window.seconds.unwrap_or(600.0))
        {
            bail!("window.hop_seconds = {h}: must be > 0 and at most window.seconds");
        }
        let ev = &self.events;
        if !(ev.silence_dbfs.is_finite() && ev.silence_dbfs <= 0.0) {
            bail!(
                "events.silence_dbfs = {}: must be a number <= 0",
                ev.silence_dbfs
            );
        }
        if !(ev.dedup_hold_seconds.is_finite() && ev.dedup_hold_seconds >= 0.0) {
            bail!(
                "events.dedup_hold_seconds = {}: must be a number >= 0",
                ev.dedup_hold_seconds
            );
        }
        let t = &self.tags;
        if !(1..=100).contains(&t.max_per_source) {
            bail!(
                "tags.max_per_source = {}: must be in 1..=100",
                t.max_per_source
            );
        }
        if let Some(l) = t.binary_sensors.iter().find(|l| l.trim().is_empty()) {
            bail!("tags.binary_sensors: {l:?} is not a label");
        }
        let p = &self.pipeline;
        if !(1..=64).contains(&p.queue) {
            bail!("pipeline.queue = {}: must be in 1..=64", p.queue);
        }
        if !(1..=10_000).contains(&p.outbox) {
            bail!("pipeline.outbox = {}: must be in 1..=10000", p.outbox);
        }
        if !(p.ring_seconds >= 0.1 && p.ring_seconds <= 60.0) {
            bail!(
                "pipeline.ring_seconds = {}: must be in 0.1..=60",
                p.ring_seconds
            );
        }
        if let Some(m) = &self.mqtt {
            m.validate()?;
        }
        Ok(())
    }
}

impl MqttConfig {
    /// A broker at `host` with every other key at its default.
    pub fn new(host: String) -> Self {
        serde_json::from_value(serde_json::json!({ "host": host }))
            .expect("every other [mqtt] key has a default")
    }

    fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            bail!(
                "mqtt.host is empty: give the broker's host name, or remove [mqtt] to print captions to stdout"
            );
        }
        // A host is a name or an address; an IPv6 address is the one form with colons.
        let bad_host = self
            .host
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
            || self.host.len() > 253
            || (self.host.contains(':') && self.host.parse::<std::net::Ipv6Addr>().is_err());
        if bad_host {
            bail!(
                "mqtt.host = {:?}: must be a host name or an IP address (a port goes in mqtt.port)",
                self.host
            );
        }
        if self.port == Some(0) {
            bail!("mqtt.port = 0: must be in 1..=65535");
        }
        if self.qos > 2 {
            bail!("mqtt.qos = {}: must be 0, 1 or 2", self.qos);
        }
        check_topic_part("mqtt.topic_prefix", &self.topic_prefix, false)?;
        check_topic_part("mqtt.discovery_prefix", &self.discovery_prefix, false)?;
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 256 || id.chars().any(char::is_control))
        {
            bail!("mqtt.client_id = {id:?}: must be 1 to 256 bytes without control characters");
        }
        if !(self.keep_alive_seconds >= 5 && self.keep_alive_seconds <= 3600) {
            bail!(
                "mqtt.keep_alive_seconds = {}: must be in 5..=3600",
                self.keep_alive_seconds
            );
        }
        if !(self.stats_interval_seconds >= 0.1 && self.stats_interval_seconds <= 86_400.0) {
            bail!(
                "mqtt.stats_interval_seconds = {}: must be in 0.1..=86400",
                self.stats_interval_seconds
            );
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            bail!("mqtt.password_file and mqtt.password_env are both set: choose one");
        }
        if (self.password_file.is_some() || self.password_env.is_some()) && self.username.is_none()
        {
            bail!("a password is configured but mqtt.username is not: set mqtt.username");
        }
        if let Some(path) = &self.password_file {
            check_readable("mqtt.password_file", path)?;
        }
        if let Some(var) = &self.password_env
            && std::env::var_os(var).is_none()
        {
            bail!("mqtt.password_env = {var:?}: that environment variable is not set");
        }
        // What the files hold is checked by the sink that reads them (sink/mqtt/tls.rs).
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            bail!("mqtt.tls.client_cert and mqtt.tls.client_key must be given together");
        }
        Ok(())
    }

    /// The port in effect.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }
}

fn check_readable(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key} = {}: cannot read it", path.display()))
}

/// A topic level or prefix: MQTT forbids NUL and wildcards in topic names, a leading `$` is
/// the broker's own space (`$SYS`), control characters break log lines and HA, and
/// the whole topic must fit MQTT's 65,535 bytes.
fn check_topic_part(key: &str, value: &str, level: bool) -> Result<()> {
    let what = if level {
        "a topic level"
    } else {
        "a topic prefix"
    };
    if value.is_empty()
        || value.len() > 256
        || value.starts_with('$')
        || value.contains(['+', '#'])
        || value.chars().any(char::is_control)
        || (level && value.contains('/'))
    {
        bail!(
            "{key} = {value:?}: {what} must be 1 to 256 bytes without '+', '#', control characters{}, and must not start with '$'",
            if level { " or '/'" } else { "" }
        );
    }
    Ok(())
}

/// Which runtime executes a bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The ONNX graphs through tract, on the CPU.
    #[default]
    Tract,
    /// The TorchScript twin through libtorch, on CUDA when available (`--features tch`).
    // Out of the help of a build without it; still parsed, to say how to get it.
    #[cfg_attr(not(feature = "tch"), value(hide = true))]
    Torch,
    /// The ONNX graphs through ONNX Runtime, for benchmarks (`--features ort`, ORT_DYLIB_PATH).
    #[cfg_attr(not(feature = "ort"), value(hide = true))]
    Ort,
}

/// Which tags are published: `[tags]` in the configuration.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagConfig {
    /// Per-head thresholds overriding the bundle's (`{ hark = 0.4, audioset = 0.3 }`).
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// At most this many tags per head and window.
    pub max_per_source: usize,
    /// Labels that get a Home Assistant binary sensor each (with discovery on).
    pub binary_sensors: Vec<String>,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            thresholds: Default::default(),
            max_per_source: 5,
            binary_sensors: Vec::new(),
        }
    }
}

/// `[privacy] speech`: what a window with speech publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SpeechPolicy {
    /// The model's caption, as for any other window.
    Caption,
    /// "people are talking" and the tags that do not name speech; no alternatives.
    #[default]
    Redact,
    /// Nothing (counted as `speech_dropped`).
    Drop,
}

/// One `[[triggers]]` table.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Its name: the MQTT topic level `hark/<device>/trigger/<name>` (a–z, 0–9, `_`, `-`).
    pub name: String,
    /// What it listens for, in words ("glass breaking", "a window shatters").
    pub phrases: Vec<String>,
    /// Fires at this score or more (default [`DEFAULT_THRESHOLD`]).
    #[serde(default)]
    pub threshold: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Config> {
        let dir = std::env::temp_dir().join(format!("hark-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{:x}.toml",
            toml.len() * 7919 + toml.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&path, toml)?;
        let r = Config::load(Some(&path), |_| Ok(()));
        std::fs::remove_file(&path)?;
        r
    }

    #[test]
    fn empty_file_means_default_microphone_and_stdout() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.source, SourceConfig::default());
        assert!(cfg.mqtt.is_none());
        assert_eq!(cfg.overflow(), Overflow::DropOldest);
    }

    #[test]
    fn errors_name_the_key() {
        let msg = |t: &str| format!("{:#}", parse(t).unwrap_err());
        assert!(msg("[mqtt]\nhost = \"b\"\nqos = 3\n").contains("mqtt.qos = 3: must be 0, 1 or 2"));
        assert!(msg("[mqtt]\nhots = \"b\"\n").contains("hots"));
        assert!(msg("[source]\nkind = \"radio\"\n").contains("radio"));
        assert!(msg("[events]\nsilence_dbfs = 3.0\n").contains("events.silence_dbfs"));
        assert!(msg("[pipeline]\noverflow = \"sometimes\"\n").contains("sometimes"));
        assert!(
            msg("[source]\nkind = \"stdin\"\nsample_rate = 5\n").contains("source.sample_rate = 5")
        );
        assert!(msg("device = \"a/b\"\n").contains("device"));
    }

    #[test]
    fn topics_and_hosts_that_could_never_work_are_refused() {
        let msg = |t: &str| format!("{:#}", parse(t).unwrap_err());
        for device in ["a\\u0000b", "a\\nb", "$SYS", "a+b"] {
            assert!(
                msg(&format!("device = \"{device}\"\n")).contains("device"),
                "{device}"
            );
        }
        let long = "x".repeat(70_000);
        assert!(msg(&format!("device = \"{long}\"\n")).contains("1 to 256 bytes"));
        for prefix in ["$SYS", "a\\u0000", "home/#", ""] {
            let e = msg(&format!(
                "[mqtt]\nhost = \"b\"\ntopic_prefix = \"{prefix}\"\n"
            ));
            assert!(e.contains("mqtt.topic_prefix"), "{prefix}: {e}");
        }
        let e = msg("[mqtt]\nhost = \"127.0.0.1:18831\"\n");
        assert!(e.contains("mqtt.host") && e.contains("mqtt.port"), "{e}");
        parse("[mqtt]\nhost = \"::1\"\n").unwrap();
        parse("[mqtt]\nhost = \"broker.local\"\ntopic_prefix = \"home/hark\"\n").unwrap();
    }

    #[test]
    fn stdin_source_blocks_by_default() {
        let cfg = parse("[source]\nkind = \"stdin\"\nsample_rate = 16000\n").unwrap();
        assert_eq!(cfg.overflow(), Overflow::Block);
    }
}
