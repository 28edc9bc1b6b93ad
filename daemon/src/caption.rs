//! `hark caption`: captions audio files window by window with a bundle, for one-off use and
//! for evaluating bundles through exactly the daemon's code path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::decode::{self, DecodeParams};
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
    model: &Model,
    file: &Path,
    params: &DecodeParams,
) -> Result<Vec<WindowCaption>> {
    let m = &model.bundle.manifest;
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
        let c =
            caption_mel(model, &mel[start * n_mels..end * n_mels], params).with_context(|| {
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

/// Encodes and decodes one window (`frames × n_mels`, frame-major): the step shared by
/// `hark caption` and the daemon's inference thread.
pub fn caption_mel(model: &Model, mel: &[f32], params: &DecodeParams) -> Result<Captioned> {
    let t0 = Instant::now();
    let encoded = model
        .encode(mel)
        .map_err(|e| anyhow::anyhow!("encoder failed: {e:#}"))?;
    let encoder_ms = ms(t0);
    let t0 = Instant::now();
    let hyps = decode::decode(&mut model.stepper(&encoded), model.bundle.special(), params)
        .context("decoding failed")?;
    let decoding_ms = ms(t0);
    let (best, rest) = hyps.split_first().context("decoder produced no caption")?;
    Ok(Captioned {
        text: model.bundle.text(&best.tokens),
        tokens: best.tokens.clone(),
        score: best.score,
        alternatives: rest
            .iter()
            .map(|h| Alternative {
                text: model.bundle.text(&h.tokens),
                score: h.score,
            })
            .collect(),
        tags: model.tags(&encoded),
        encoder_ms,
        decoding_ms,
    })
}
