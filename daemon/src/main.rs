//! `hark`: captions what a microphone hears and publishes it over MQTT.

mod features;
mod wav;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Write the log-mel features of a WAV file as a float32 .npy array [n_mels, frames].
    Features {
        /// Input WAV file (any rate and channel count; resampled and downmixed).
        file: PathBuf,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
        /// Front-end parameters as TOML (defaults: 16 kHz, 64 mels, 10 ms hop).
        #[arg(long)]
        frontend: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Features {
            file,
            out,
            frontend,
        } => {
            let cfg = match frontend {
                Some(path) => features::load_frontend(&path)?,
                None => dsp::FrontendConfig::default(),
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
