//! What a model gives for one window of log-mel frames, whatever runtime runs it: the
//! `Captioner` trait the runtimes implement, its output and the decoding step they share.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::bundle::Bundle;
use crate::decode::{self, DecodeParams, Stepper};

/// A loaded model that captions windows of log-mel frames, whatever runs it.
pub trait Captioner: Send + Sync {
    /// The bundle it was loaded from.
    fn bundle(&self) -> &Bundle;

    /// Encodes and decodes one window (`frames × n_mels`, frame-major), and scores
    /// `phrases` (token ids) under it: the step shared by `hark caption` and the daemon's
    /// inference thread.
    fn caption_mel(
        &self,
        mel: &[f32],
        params: &DecodeParams,
        phrases: &[Vec<u32>],
    ) -> Result<ModelOutput>;
}

/// A frame-major window (`frames × n_mels`, as `caption_mel` gets it) laid out band-major,
/// `[n_mels, frames]`: the encoder graphs' `[1, n_mels, frames]` input.
pub fn bands_major(mel: &[f32], n_mels: usize) -> Vec<f32> {
    let frames = mel.len() / n_mels;
    let mut out = vec![0.0f32; mel.len()];
    for (t, frame) in mel.chunks_exact(n_mels).enumerate() {
        for (b, v) in frame.iter().enumerate() {
            out[b * frames + t] = *v;
        }
    }
    out
}

/// A caption of one window of log-mel frames.
pub struct ModelOutput {
    /// Best caption.
    pub text: String,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Its score.
    pub score: f32,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Each tag head's probabilities, in `manifest.tags` order (empty without heads).
    pub tag_probabilities: Vec<Vec<f32>>,
    /// Each scored phrase's length-normalised log-probability (`decode::score_phrases`).
    pub phrase_scores: Vec<f32>,
    /// The window's sound embedding (bundles with `[sounds]`), for learned sounds.
    pub embedding: Option<Vec<f32>>,
    /// Encoder time, ms.
    pub encoder_ms: f64,
    /// Decoding time, ms.
    pub decoding_ms: f64,
    /// Phrase scoring time, ms.
    pub phrases_ms: f64,
}

/// An alternative caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    /// Caption text.
    pub text: String,
    /// Its score.
    pub score: f32,
}

/// Decodes an encoded window with any runtime's stepper, then scores `phrases` under it.
/// `vectors` are the encoder's outputs after the states: each tag head's probabilities, then
/// the sound embedding when the bundle has `[sounds]`.
pub fn decode_window<S: Stepper>(
    bundle: &Bundle,
    stepper: &mut S,
    params: &DecodeParams,
    encoder_ms: f64,
    mut vectors: Vec<Vec<f32>>,
    phrases: &[Vec<u32>],
) -> Result<ModelOutput> {
    let heads = bundle.manifest.tags.len();
    let embedding = (bundle.manifest.sounds.is_some() && vectors.len() > heads)
        .then(|| vectors.swap_remove(heads));
    vectors.truncate(heads);
    let t0 = Instant::now();
    let hyps = decode::decode(stepper, bundle.special(), params).context("decoding failed")?;
    let decoding_ms = ms(t0);
    let t1 = Instant::now();
    let phrase_scores = decode::score_phrases(stepper, bundle.special(), phrases)
        .context("phrase scoring failed")?;
    let phrases_ms = ms(t1);
    let (best, rest) = hyps.split_first().context("decoder produced no caption")?;
    Ok(ModelOutput {
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
        tag_probabilities: vectors,
        phrase_scores,
        embedding,
        encoder_ms,
        decoding_ms,
        phrases_ms,
    })
}

/// Milliseconds since `since`.
pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
