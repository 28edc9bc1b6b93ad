//! `hark features`: the log-mel of an audio file as a .npy array `[n_mels, frames]`, exactly
//! as the daemon and the trainer compute it.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use dsp::FrontendConfig;
use npyz::WriterBuilder;

/// Loads a front-end config from a TOML file (missing keys take their defaults).
pub fn load_frontend(path: &Path) -> Result<FrontendConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read frontend config {}", path.display()))?;
    let cfg: FrontendConfig = toml::from_str(&text)
        .with_context(|| format!("{}: invalid frontend config", path.display()))?;
    cfg.validate()
        .with_context(|| format!("{}: invalid frontend config", path.display()))?;
    Ok(cfg)
}

/// Computes the log-mel of `input` and writes it to `out` as float32 `[n_mels, frames]`.
/// Returns the number of frames.
pub fn write(input: &Path, out: &Path, cfg: &FrontendConfig) -> Result<usize> {
    let clip = crate::source::audio_file::read(input)?;
    let frames = dsp::features(cfg, &clip.samples, clip.sample_rate)
        .with_context(|| format!("{}: cannot compute features", input.display()))?;
    let n_mels = cfg.n_mels;
    let t = frames.len() / n_mels;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[n_mels as u64, t as u64])
        .writer(BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("cannot write {}", out.display()))?;
    // Transpose frame-major features into the model's [n_mels, frames] layout.
    w.extend((0..n_mels).flat_map(|m| frames.iter().skip(m).step_by(n_mels).copied()))
        .and_then(|_| w.finish())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(t)
}
