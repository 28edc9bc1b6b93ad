//! `hark caption`: captions audio files window by window with a bundle, for one-off use and
//! for evaluating bundles through exactly the daemon's code path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::decode::{self, DecodeParams, Stepper};
use crate::model::Model;

/// Where the shipped default bundle is looked for, in order.
pub fn default_bundle_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // An installed layout: <prefix>/bin/hark and <prefix>/share/hark/model.
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            dirs.push(prefix.join("share/hark/model"));
        }
    }
    dirs.push(PathBuf::from("/usr/share/hark/model"));
    // A build from the repository.
    dirs.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/model"
    )));
    dirs
}

/// The bundle directory to use: `explicit`, else the first default that exists.
pub fn resolve_bundle(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = default_bundle_dirs();
    candidates
        .iter()
        .find(|d| d.join(crate::bundle::MANIFEST).is_file())
        .cloned()
        .with_context(|| {
            let list: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "no model bundle given and none found at {}; pass --bundle DIR",
                list.join(", ")
            )
        })
}

/// One captioned window.
#[derive(Debug, Serialize)]
pub struct WindowCaption {
    /// The file.
    pub file: String,
    /// Window start, seconds from the file's start.
    pub start: f32,
    /// Window end, seconds.
    pub end: f32,
    /// Best caption.
    pub text: String,
    /// The model that made it.
    pub model: String,
    /// Clip-level tags whose probability exceeds 0.5 (bundles with a tag head).
    pub tags: Vec<String>,
    /// Its score (length-normalised log-probability).
    pub score: f32,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Milliseconds spent per stage.
    pub timings_ms: Timings,
}

/// An alternative caption.
#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    /// Caption text.
    pub text: String,
    /// Its score.
    pub score: f32,
}

/// Time per stage, milliseconds.
#[derive(Debug, Serialize, Default)]
pub struct Timings {
    /// Log-mel of the window (shared computation split evenly over windows).
    pub mel: f64,
    /// Encoder.
    pub encoder: f64,
    /// Decoding.
    pub decoding: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Captions `file`: one caption per window of the bundle's length, windows `hop` apart
/// (a file shorter than a window is one window).
pub fn caption_file(
    model: &dyn Captioner,
    file: &Path,
    params: &DecodeParams,
) -> Result<Vec<WindowCaption>> {
    let m = &model.bundle().manifest;
    let clip = crate::wav::read(file)?;
    let t0 = Instant::now();
    let mel = dsp::features(&m.frontend, &clip.samples, clip.sample_rate)
        .with_context(|| format!("{}: cannot compute features", file.display()))?;
    let mel_ms = ms(t0);
    let n_mels = m.frontend.n_mels;
    let frames = mel.len() / n_mels;
    let fps = m.frames_per_second();
    let (window, hop) = m.window_frames();
    let mut starts = vec![0];
    while starts.last().expect("non-empty") + window < frames {
        starts.push(starts.last().expect("non-empty") + hop);
    }
    let mut out = Vec::new();
    for &start in &starts {
        let end = (start + window).min(frames);
        let c = model
            .caption_mel(&mel[start * n_mels..end * n_mels], params)
            .with_context(|| {
                format!(
                    "{}: window {:.1}-{:.1} s",
                    file.display(),
                    start as f32 / fps,
                    end as f32 / fps
                )
            })?;
        out.push(WindowCaption {
            file: file.display().to_string(),
            start: start as f32 / fps,
            end: end as f32 / fps,
            text: c.text,
            model: m.name.clone(),
            tags: c.tags,
            score: c.score,
            tokens: c.tokens,
            alternatives: c.alternatives,
            timings_ms: Timings {
                mel: mel_ms / starts.len() as f64,
                encoder: c.encoder_ms,
                decoding: c.decoding_ms,
            },
        });
    }
    Ok(out)
}

/// A caption of one window of log-mel frames.
pub struct Captioned {
    /// Best caption.
    pub text: String,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Its score.
    pub score: f32,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Tags of the bundle's tag head.
    pub tags: Vec<String>,
    /// Encoder time, ms.
    pub encoder_ms: f64,
    /// Decoding time, ms.
    pub decoding_ms: f64,
}

/// Which runtime executes a bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The ONNX graphs through tract, on the CPU.
    #[default]
    Tract,
    /// The TorchScript twin through libtorch, on CUDA when available (`--features tch`).
    Torch,
}

/// A loaded model that captions windows of log-mel frames, whatever runs it.
pub trait Captioner: Send + Sync {
    /// The bundle it was loaded from.
    fn bundle(&self) -> &Bundle;

    /// Encodes and decodes one window (`frames × n_mels`, frame-major): the step shared by
    /// `hark caption` and the daemon's inference thread.
    fn caption_mel(&self, mel: &[f32], params: &DecodeParams) -> Result<Captioned>;
}

/// Loads the bundle in `dir` for `backend`.
pub fn load(dir: &Path, backend: Backend) -> Result<std::sync::Arc<dyn Captioner>> {
    let context = || format!("cannot use model bundle {}", dir.display());
    let model: std::sync::Arc<dyn Captioner> = match backend {
        Backend::Tract => std::sync::Arc::new(Model::load(dir).with_context(context)?),
        #[cfg(feature = "tch")]
        Backend::Torch => {
            std::sync::Arc::new(crate::torch::TorchModel::load(dir).with_context(context)?)
        }
        #[cfg(not(feature = "tch"))]
        Backend::Torch => anyhow::bail!(
            "the torch backend needs hark built with `--features tch` (docs/DEPLOY.md)"
        ),
    };
    log::info!("{}", model.bundle().describe());
    Ok(model)
}

impl Captioner for Model {
    fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn caption_mel(&self, mel: &[f32], params: &DecodeParams) -> Result<Captioned> {
        let t0 = Instant::now();
        let encoded = self
            .encode(mel)
            .map_err(|e| anyhow::anyhow!("encoder failed: {e:#}"))?;
        let encoder_ms = ms(t0);
        let tags = self.tags(&encoded);
        decode_window(
            &self.bundle,
            &mut self.stepper(&encoded),
            params,
            encoder_ms,
            tags,
        )
    }
}

/// Decodes an encoded window with any runtime's stepper.
pub fn decode_window<S: Stepper>(
    bundle: &Bundle,
    stepper: &mut S,
    params: &DecodeParams,
    encoder_ms: f64,
    tags: Vec<String>,
) -> Result<Captioned> {
    let t0 = Instant::now();
    let hyps = decode::decode(stepper, bundle.special(), params).context("decoding failed")?;
    let decoding_ms = ms(t0);
    let (best, rest) = hyps.split_first().context("decoder produced no caption")?;
    Ok(Captioned {
        text: bundle.text(&best.tokens),
        tokens: best.tokens.clone(),
        score: best.score,
        alternatives: rest
            .iter()
            .map(|h| Alternative {
                text: bundle.text(&h.tokens),
                score: h.score,
            })
            .collect(),
        tags,
        encoder_ms,
        decoding_ms,
    })
}
