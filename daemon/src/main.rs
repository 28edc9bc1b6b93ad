//! `hark`: captions what a microphone hears and publishes it over MQTT.

mod bundle;
mod caption;
mod decode;
mod features;
mod model;
mod wav;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use decode::{DecodeParams, Strategy};

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
    /// Caption WAV files, window by window, and print the captions.
    Caption {
        /// WAV files (any rate and channel count).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Model bundle directory (default: the bundle shipped with hark).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Print one JSON object per window (text, score, alternatives, timings).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        decoding: DecodeArgs,
    },
    /// Write the log-mel features of a WAV file as a float32 .npy array [n_mels, frames].
    Features {
        /// Input WAV file (any rate and channel count; resampled and downmixed).
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

/// Decoding overrides; anything not given comes from the bundle's `[decoding]`.
#[derive(Args)]
struct DecodeArgs {
    /// Decoding strategy.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Beam width (beam, diverse-beam).
    #[arg(long)]
    beam_size: Option<usize>,
    /// Beam groups (diverse-beam).
    #[arg(long)]
    groups: Option<usize>,
    /// Penalty per earlier group choosing the same token (diverse-beam).
    #[arg(long)]
    diversity_penalty: Option<f32>,
    /// Sampling temperature (sample, sample-rerank).
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep the k most probable tokens (sample; 0 = all).
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus mass (sample, sample-rerank).
    #[arg(long)]
    top_p: Option<f32>,
    /// Samples drawn (sample-rerank).
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
    /// `base` (the bundle's defaults) with these overrides applied, validated.
    fn apply(&self, base: DecodeParams) -> anyhow::Result<DecodeParams> {
        let p = DecodeParams {
            strategy: self.strategy.unwrap_or(base.strategy),
            beam_size: self.beam_size.unwrap_or(base.beam_size),
            groups: self.groups.unwrap_or(base.groups),
            diversity_penalty: self.diversity_penalty.unwrap_or(base.diversity_penalty),
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.unwrap_or(base.top_k),
            top_p: self.top_p.unwrap_or(base.top_p),
            samples: self.samples.unwrap_or(base.samples),
            alternatives: self.alternatives.unwrap_or(base.alternatives),
            seed: self.seed.unwrap_or(base.seed),
            min_len: self.min_len.unwrap_or(base.min_len),
            max_len: self.max_len.unwrap_or(base.max_len),
            length_penalty: self.length_penalty.unwrap_or(base.length_penalty),
            repetition_penalty: self.repetition_penalty.unwrap_or(base.repetition_penalty),
            no_repeat_ngram: self.no_repeat_ngram.unwrap_or(base.no_repeat_ngram),
        };
        if let Err(e) = p.validate() {
            bail!("{e}");
        }
        Ok(p)
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Caption {
            files,
            bundle,
            json,
            decoding,
        } => {
            let dir = caption::resolve_bundle(bundle.as_deref())?;
            let model = model::Model::load(&dir)
                .with_context(|| format!("cannot use model bundle {}", dir.display()))?;
            log::info!("{}", model.bundle.describe());
            let params = decoding.apply(model.bundle.manifest.decoding.clone())?;
            model
                .bundle
                .manifest
                .check_max_len(params.max_len)
                .map_err(|e| anyhow::anyhow!("--max-len: {e}"))?;
            for file in &files {
                for w in caption::caption_file(&model, file, &params)? {
                    if json {
                        println!("{}", serde_json::to_string(&w)?);
                    } else {
                        println!("{} [{:.1}-{:.1}s] {}", w.file, w.start, w.end, w.text);
                    }
                }
            }
        }
        Command::Features {
            file,
            out,
            frontend,
            bundle,
        } => {
            let cfg = match (frontend, bundle) {
                (Some(path), _) => features::load_frontend(&path)?,
                (None, Some(dir)) => bundle::Bundle::open(&dir)?.manifest.frontend,
                (None, None) => dsp::FrontendConfig::default(),
            };
            let frames = features::run(&file, &out, &cfg)?;
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("hark=info,warn"))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
