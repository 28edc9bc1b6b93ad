//! `hark`: captions what a microphone hears and publishes it over MQTT. The command line;
//! the daemon itself is the library (lib.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use hark::decode::Strategy;
use hark::{cli, config, model, service, source};

#[derive(Parser)]
#[command(
    name = "hark",
    version,
    about = "Edge audio captioning: microphone in, captions out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen and publish captions: the service (see docs/CONFIG.md and docs/MQTT.md).
    Run(RunArgs),
    /// List capture devices (ids for `source.device`).
    Devices,
    /// Check a configuration file and the model bundle it names, then exit.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Check a model bundle as `hark run` loads it (manifest, files and hashes, front end,
    /// tokens, decoding, graphs probed with a full window), then exit: 0 and one line
    /// describing it, or 1 and what is wrong. `hark-export` refuses bundles this refuses.
    CheckBundle {
        /// The bundle directory.
        dir: PathBuf,
        /// Runtime to load it with.
        #[arg(long, value_enum, default_value_t)]
        backend: config::Backend,
    },
    /// Caption audio files, window by window, and print the captions.
    Caption(CaptionArgs),
    /// Teach hark a sound from recordings of it ("this is our doorbell"): each non-silent
    /// window of each file becomes an example (docs/SOUNDS.md). Never keeps audio.
    Learn {
        /// The sound's name (a-z, 0-9, '_', '-'): its MQTT topic is sound/NAME.
        name: String,
        /// Recordings of the sound, at most 60 s each (any format `hark caption` reads).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The configuration `hark run` uses: its model, privacy, silence threshold and
        /// sounds.dir.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Model bundle directory (default: the configuration's, else the shipped one).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Forget the examples learned before under this name.
        #[arg(long)]
        replace: bool,
        /// Fire at this score (0-1) instead of the model's default for the number of
        /// examples.
        #[arg(long)]
        threshold: Option<f32>,
    },
    /// List, show, tune or forget learned sounds.
    Sounds {
        #[command(subcommand)]
        action: SoundsAction,
        /// The configuration whose sounds.dir (and model) to use.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Write the log-mel features of an audio file as a float32 .npy array [n_mels, frames].
    Features {
        /// Input audio file (WAV, FLAC, Ogg Vorbis, MP3, AAC/M4A; any rate and channel count;
        /// resampled and downmixed).
        file: PathBuf,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
        /// Front-end parameters as TOML (defaults: 16 kHz, 64 mels, 10 ms hop).
        #[arg(long, conflicts_with = "bundle")]
        frontend: Option<PathBuf>,
        /// Use the front end of this model bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
}

/// `hark sounds` actions.
#[derive(Subcommand)]
enum SoundsAction {
    /// Every learned sound, one line each.
    List,
    /// A sound's examples, where they came from and how the sound scores each.
    Show {
        /// The sound.
        name: String,
    },
    /// Set the score (0-1) a sound fires at, or `default` for the model's.
    Threshold {
        /// The sound.
        name: String,
        /// A number in (0, 1), or `default`.
        value: String,
    },
    /// Delete a learned sound.
    Forget {
        /// The sound.
        name: String,
    },
}

/// `hark caption` flags.
#[derive(Args)]
struct CaptionArgs {
    /// Audio files: WAV, FLAC, Ogg Vorbis, MP3 or AAC/M4A, any rate and channel count;
    /// `-` reads one from standard input. A file that fails is reported and the next
    /// one captioned; the exit status is 1 if any failed.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Judge windows by this configuration, as `hark run -c FILE` would: its model,
    /// decoding, window, silence threshold, tags, privacy and triggers (fired triggers
    /// in each window's `triggers`). The flags below override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Model bundle directory (default: the configuration's, else the bundle shipped
    /// with hark).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Runtime that runs the bundle (the values this build has).
    #[arg(long, value_enum)]
    backend: Option<config::Backend>,
    /// Print one JSON object per window: the fields of the caption payload `hark run`
    /// publishes (docs/MQTT.md) with times in seconds from the file's start, plus the
    /// file, tokens, fired triggers, `--trigger` phrase scores and timings.
    #[arg(long)]
    json: bool,
    /// Windows quieter than this (RMS, dBFS) are silent: no caption, as in `hark run`
    /// (default: events.silence_dbfs, -60).
    #[arg(long, allow_negative_numbers = true)]
    silence_dbfs: Option<f32>,
    /// What a window with speech shows (default: privacy.speech, redact), as `hark run`
    /// publishes it.
    #[arg(long, value_enum)]
    privacy: Option<config::SpeechPolicy>,
    /// Publish tags of this probability or more from every tag head (default: each
    /// head's threshold in the bundle).
    #[arg(long)]
    tag_threshold: Option<f32>,
    /// Score this phrase under every window ("glass breaking"): its length-normalised
    /// log-probability as the start of the window's caption, and the trigger score a
    /// `[[triggers]]` table compares with its threshold. Repeatable.
    #[arg(long = "trigger", value_name = "PHRASE")]
    triggers: Vec<String>,
    /// Score this learned sound on every window (`hark sounds list` names them), as
    /// `hark run` does. Repeatable.
    #[arg(long = "sound", value_name = "NAME")]
    sounds: Vec<String>,
    #[command(flatten)]
    decoding: DecodeArgs,
}

impl CaptionArgs {
    /// Captions the files with the configuration as `hark run` reads it and these flags
    /// applied on top: one place for every shared option's default and validation.
    fn run(self) -> anyhow::Result<()> {
        let cfg = config::Config::load(self.config.as_deref(), |cfg| {
            if let Some(s) = self.silence_dbfs {
                cfg.events.silence_dbfs = s;
            }
            if let Some(p) = self.privacy {
                cfg.privacy.speech = p;
            }
            if self.bundle.is_some() {
                cfg.model.bundle = self.bundle.clone();
            }
            if let Some(b) = self.backend {
                cfg.model.backend = b;
            }
            cfg.decoding.extend(self.decoding.overrides());
            Ok(())
        })?;
        let mut settings = cli::caption::settings(&cfg, self.tag_threshold, &self.triggers)?;
        if !self.sounds.is_empty() {
            cli::caption::load_sounds(&cfg, &mut settings, &self.sounds)?;
        }
        let failed = cli::caption::caption_files(&mut settings, &self.files, self.json);
        if failed > 0 {
            anyhow::bail!(
                "{failed} of {} file(s) could not be captioned",
                self.files.len()
            );
        }
        Ok(())
    }
}

/// `hark run` flags; each overrides the configuration file and the environment.
#[derive(Args)]
struct RunArgs {
    /// Configuration file (TOML); without it, built-in defaults and `HARK__…` variables.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Caption this audio file (WAV, FLAC, Ogg Vorbis, MP3, AAC/M4A) instead of the
    /// configured source, then exit.
    #[arg(long, conflicts_with_all = ["stdin", "microphone"])]
    file: Option<PathBuf>,
    /// With --file: deliver the audio at its real speed, like a microphone.
    #[arg(long, requires = "file")]
    realtime: bool,
    /// Read raw little-endian PCM from stdin at this sample rate (Hz).
    #[arg(long, value_name = "RATE", conflicts_with = "microphone")]
    stdin: Option<u32>,
    /// With --stdin: interleaved channels.
    #[arg(long, requires = "stdin", default_value_t = 1)]
    channels: u16,
    /// With --stdin: 32-bit float samples instead of 16-bit integers.
    #[arg(long, requires = "stdin")]
    float: bool,
    /// Capture from this device (id or part of its name; `default` = the system default).
    #[arg(long, value_name = "DEVICE")]
    microphone: Option<String>,
    /// With a microphone: stop after this many seconds of audio.
    #[arg(long)]
    seconds: Option<f32>,
    /// Model bundle directory.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Runtime that runs the bundle (the values this build has).
    #[arg(long, value_enum)]
    backend: Option<config::Backend>,
    /// Publish to this MQTT broker: HOST, HOST:PORT, an IPv6 address or [IPv6]:PORT (default: the config's, else stdout).
    #[arg(long)]
    broker: Option<String>,
    /// Device id (the MQTT topic level).
    #[arg(long)]
    device_id: Option<String>,
    #[command(flatten)]
    decoding: DecodeArgs,
}

impl RunArgs {
    /// Applies the flags to a loaded configuration.
    fn apply(self, cfg: &mut config::Config) -> anyhow::Result<()> {
        use config::{PcmFormat, SourceConfig};
        if let Some(path) = self.file {
            cfg.source = SourceConfig::File {
                path,
                realtime: self.realtime,
            };
        }
        if let Some(sample_rate) = self.stdin {
            cfg.source = SourceConfig::Stdin {
                sample_rate,
                channels: self.channels,
                format: if self.float {
                    PcmFormat::F32le
                } else {
                    PcmFormat::S16le
                },
            };
        }
        if let Some(name) = self.microphone {
            cfg.source = SourceConfig::Microphone {
                device: (name != "default").then_some(name),
                sample_rate: None,
                max_seconds: None,
            };
        }
        match (self.seconds, &mut cfg.source) {
            (Some(s), SourceConfig::Microphone { max_seconds, .. }) => *max_seconds = Some(s),
            (Some(s), other) => anyhow::bail!(
                "--seconds {s}: it stops a microphone, but the source is {}; a file or stdin \
                 ends with its audio (cut a file first, e.g. `sox in.wav out.wav trim 0 {s}`)",
                other.describe()
            ),
            (None, _) => {}
        }
        if self.bundle.is_some() {
            cfg.model.bundle = self.bundle;
        }
        if let Some(b) = self.backend {
            cfg.model.backend = b;
        }
        if let Some(broker) = self.broker {
            let (host, port) = split_broker(&broker)?;
            let mut m = cfg
                .mqtt
                .take()
                .unwrap_or(config::MqttConfig::new(host.clone()));
            m.host = host;
            m.port = port.or(m.port);
            cfg.mqtt = Some(m);
        }
        if self.device_id.is_some() {
            cfg.device = self.device_id;
        }
        cfg.decoding.extend(self.decoding.overrides());
        Ok(())
    }
}

/// How errors name the configuration: its file, or "configuration" without one.
fn origin(file: Option<&std::path::Path>) -> String {
    file.map_or("configuration".into(), |p| p.display().to_string())
}

/// `HOST`, `HOST:PORT`, an IPv6 address, or `[IPv6]:PORT`.
fn split_broker(broker: &str) -> anyhow::Result<(String, Option<u16>)> {
    let port = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("--broker {broker}: the port must be a number in 1..=65535"))
    };
    if let Some(rest) = broker.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .with_context(|| format!("--broker {broker}: no ']' after the IPv6 address"))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(port(p)?))),
            None if tail.is_empty() => Ok((host.to_string(), None)),
            None => anyhow::bail!("--broker {broker}: expected [ADDRESS]:PORT"),
        };
    }
    if broker.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((broker.to_string(), None));
    }
    match broker.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(port(p)?))),
        None => Ok((broker.to_string(), None)),
    }
}

/// Decoding overrides; anything not given comes from the bundle's `[decoding]`.
#[derive(Args)]
struct DecodeArgs {
    /// Decoding strategy.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Beam width (beam, diverse_beam).
    #[arg(long)]
    beam_size: Option<usize>,
    /// Beam groups (diverse_beam).
    #[arg(long)]
    groups: Option<usize>,
    /// Penalty per earlier group choosing the same token (diverse_beam).
    #[arg(long)]
    diversity_penalty: Option<f32>,
    /// Sampling temperature (sample, sample_rerank).
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep the k most probable tokens (sample; 0 = all).
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus mass (sample, sample_rerank).
    #[arg(long)]
    top_p: Option<f32>,
    /// Samples drawn (sample_rerank).
    #[arg(long)]
    samples: Option<usize>,
    /// Alternatives reported besides the best caption.
    #[arg(long)]
    alternatives: Option<usize>,
    /// Seed of the sampling strategies.
    #[arg(long)]
    seed: Option<u64>,
    /// Fewest generated tokens.
    #[arg(long)]
    min_len: Option<usize>,
    /// Most generated tokens.
    #[arg(long)]
    max_len: Option<usize>,
    /// Score = log-prob / length^length_penalty.
    #[arg(long)]
    length_penalty: Option<f32>,
    /// Penalty (>1) on tokens already generated.
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Forbid repeating n-grams of this size (0 = off).
    #[arg(long)]
    no_repeat_ngram: Option<usize>,
}

impl DecodeArgs {
    /// The flags given, as `[decoding]` keys.
    fn overrides(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let pairs = [
            ("strategy", self.strategy.map(|v| json!(v))),
            ("beam_size", self.beam_size.map(|v| json!(v))),
            ("groups", self.groups.map(|v| json!(v))),
            (
                "diversity_penalty",
                self.diversity_penalty.map(|v| json!(v)),
            ),
            ("temperature", self.temperature.map(|v| json!(v))),
            ("top_k", self.top_k.map(|v| json!(v))),
            ("top_p", self.top_p.map(|v| json!(v))),
            ("samples", self.samples.map(|v| json!(v))),
            ("alternatives", self.alternatives.map(|v| json!(v))),
            ("seed", self.seed.map(|v| json!(v))),
            ("min_len", self.min_len.map(|v| json!(v))),
            ("max_len", self.max_len.map(|v| json!(v))),
            ("length_penalty", self.length_penalty.map(|v| json!(v))),
            (
                "repetition_penalty",
                self.repetition_penalty.map(|v| json!(v)),
            ),
            ("no_repeat_ngram", self.no_repeat_ngram.map(|v| json!(v))),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect()
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let file = args.config.clone();
            let cfg = config::Config::load(file.as_deref(), |cfg| args.apply(cfg))?;
            source::check(&cfg.source)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", origin(file.as_deref())))?;
            service::run(cfg)?;
        }
        Command::Devices => {
            let devices = source::devices()?;
            if devices.is_empty() {
                println!("no capture devices found");
            }
            for (id, description, format) in devices {
                println!("{id}\n    {description}\n    {format}");
            }
        }
        Command::CheckBundle { dir, backend } => {
            let model = model::load(&dir, backend)?;
            println!("{}: ok: {}", dir.display(), model.bundle().describe());
        }
        Command::CheckConfig { file } => cli::check::check_config(&file)?,
        Command::Caption(args) => args.run()?,
        Command::Learn {
            name,
            files,
            config,
            bundle,
            replace,
            threshold,
        } => {
            let cfg = config::Config::load(config.as_deref(), |cfg| {
                if bundle.is_some() {
                    cfg.model.bundle = bundle;
                }
                Ok(())
            })?;
            cli::learn::learn(&cfg, &name, &files, replace, threshold)?;
        }
        Command::Sounds { action, config } => {
            let cfg = config::Config::load(config.as_deref(), |_| Ok(()))?;
            match action {
                SoundsAction::List => cli::learn::list(&cfg)?,
                SoundsAction::Show { name } => cli::learn::show(&cfg, &name)?,
                SoundsAction::Threshold { name, value } => {
                    cli::learn::set_threshold(&cfg, &name, &value)?
                }
                SoundsAction::Forget { name } => cli::learn::forget(&cfg, &name)?,
            }
        }
        Command::Features {
            file,
            out,
            frontend,
            bundle,
        } => {
            let cfg = match (frontend, bundle) {
                (Some(path), _) => cli::features::load_frontend(&path)?,
                (None, Some(dir)) => model::Bundle::open(&dir)?.manifest.frontend,
                (None, None) => dsp::FrontendConfig::default(),
            };
            let frames = cli::features::write(&file, &out, &cfg)?;
            println!(
                "{}: {} frames x {} mels -> {}",
                file.display(),
                frames,
                cfg.n_mels,
                out.display()
            );
        }
    }
    Ok(())
}

/// One glibc malloc arena for all threads, unless MALLOC_ARENA_MAX says otherwise: with an
/// arena per thread (source, DSP, inference, MQTT) memory freed in one is not reused by
/// another, and `hark run` on a paced 60 s file peaked at 127 MB instead of 101-103 MB.
/// Threads other than inference allocate little: a 10 min file replayed as fast as it can be
/// read took the same time within 2 % (noise) either way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first in main, before any other thread exists or allocates.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    one_malloc_arena();
    let mut logger = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("hark=info,warn"),
    );
    // symphonia logs its own probing at error level ("probe reach EOF"); hark reports what it
    // means for the file.
    logger.filter_module("symphonia", log::LevelFilter::Off);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        // Under systemd: journald adds time and unit; `<N>` prefixes carry the priority.
        logger.format(|out, record| {
            use std::io::Write as _;
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                _ => 7,
            };
            writeln!(out, "<{priority}>{}", record.args())
        });
    }
    logger.init();
    // symphonia panics on some malformed audio headers; source/audio_file.rs turns those
    // into errors naming the file, so their panic messages go to the debug log only.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().contains("symphonia"))
        {
            log::debug!("decoder panic, reported as an error: {info}");
        } else {
            default_hook(info);
        }
    }));
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_broker;

    #[test]
    fn broker_addresses_with_and_without_ports() {
        let ok = |b: &str| split_broker(b).unwrap();
        assert_eq!(ok("broker.local"), ("broker.local".into(), None));
        assert_eq!(ok("broker.local:1884"), ("broker.local".into(), Some(1884)));
        assert_eq!(ok("::1"), ("::1".into(), None));
        assert_eq!(ok("[::1]:1884"), ("::1".into(), Some(1884)));
        assert_eq!(ok("[fe80::1]"), ("fe80::1".into(), None));
        for bad in ["host:http", "host:70000", "[::1", "[::1]x"] {
            assert!(split_broker(bad).is_err(), "{bad}");
        }
    }
}
