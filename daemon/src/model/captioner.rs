//! What a model gives for one window of log-mel frames, whatever runtime runs it: the
//! `Captioner` trait the runtimes implement, its output, tags and the decoding step they share.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::bundle::Bundle;
use crate::config::TagConfig;
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

/// A clip-level tag with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tag {
    /// The label (a line of the head's labels file).
    pub label: String,
    /// Probability, 0..1.
    pub score: f32,
    /// The tag head it came from (`[[tags]] name`: `hark`, `audioset`, ...).
    pub source: String,
}

/// Why a `[tags]` threshold was refused.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// A threshold for a tag head the bundle does not have.
    #[error("tags.thresholds.{head}: the model has no tag head \"{head}\" (it has: {heads})")]
    NoHead {
        /// The head named in the config.
        head: String,
        /// The bundle's heads, comma-separated, or "none".
        heads: String,
    },
    /// A threshold outside (0, 1].
    #[error("tags.thresholds.{head} = {value}: must be in (0, 1]")]
    Threshold {
        /// The head.
        head: String,
        /// The value given.
        value: f32,
    },
}

impl TagConfig {
    /// Checks thresholds against the bundle's heads and ranges; the error names the key.
    pub fn validate(&self, bundle: &Bundle) -> std::result::Result<(), TagError> {
        for (name, t) in &self.thresholds {
            if !bundle.manifest.tags.iter().any(|h| &h.name == name) {
                let heads: Vec<&str> = bundle
                    .manifest
                    .tags
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect();
                return Err(TagError::NoHead {
                    head: name.clone(),
                    heads: if heads.is_empty() {
                        "none".to_string()
                    } else {
                        heads.join(", ")
                    },
                });
            }
            if !(*t > 0.0 && *t <= 1.0) {
                return Err(TagError::Threshold {
                    head: name.clone(),
                    value: *t,
                });
            }
        }
        Ok(())
    }

    /// The tags of one window: per head, labels whose probability reaches the threshold,
    /// most probable first, at most `max_per_source`.
    pub fn select(&self, bundle: &Bundle, probabilities: &[Vec<f32>]) -> Vec<Tag> {
        let mut out = Vec::new();
        for ((head, labels), probs) in bundle
            .manifest
            .tags
            .iter()
            .zip(&bundle.labels)
            .zip(probabilities)
        {
            let threshold = self
                .thresholds
                .get(&head.name)
                .copied()
                .unwrap_or(head.threshold);
            let mut on: Vec<(f32, &String)> = probs
                .iter()
                .zip(labels)
                .filter(|(p, _)| **p >= threshold)
                .map(|(p, l)| (*p, l))
                .collect();
            on.sort_by(|a, b| b.0.total_cmp(&a.0));
            out.extend(on.into_iter().take(self.max_per_source).map(|(p, l)| Tag {
                label: l.clone(),
                score: (p * 1000.0).round() / 1000.0,
                source: head.name.clone(),
            }));
        }
        out
    }

    /// Whether people are speaking: the first tag head (in the bundle's order) with a
    /// `speech` label decides (the default model: its own head before AudioSet's `Speech`);
    /// None when no head has one.
    pub fn speech(&self, bundle: &Bundle, tags: &[Tag]) -> Option<bool> {
        let (head, labels) = bundle
            .manifest
            .tags
            .iter()
            .zip(&bundle.labels)
            .find(|(_, l)| l.iter().any(|x| x.eq_ignore_ascii_case("speech")))?;
        let speech = labels.iter().find(|x| x.eq_ignore_ascii_case("speech"))?;
        Some(
            tags.iter()
                .any(|t| t.source == head.name && &t.label == speech),
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle with two tag heads, `hark` (dog, speech, rain; threshold 0.5) and `audioset`
    /// (Dog, Speech; threshold 0.3); no graphs are needed to pick tags.
    fn bundle() -> Bundle {
        crate::model::bundle::testing::bundle(
            &[],
            r#"
            [[tags]]
            name = "hark"
            labels = "labels.txt"
            output = "tags"
            [[tags]]
            name = "audioset"
            labels = "audioset.txt"
            output = "audioset"
            threshold = 0.3
            "#,
            vec![
                vec!["dog".into(), "speech".into(), "rain".into()],
                vec!["Dog".into(), "Speech".into()],
            ],
        )
    }

    #[test]
    fn tags_over_each_heads_threshold_come_most_probable_first() {
        let b = bundle();
        let tags = TagConfig::default().select(&b, &[vec![0.6, 0.1, 0.93], vec![0.35, 0.2]]);
        let got: Vec<(&str, f32, &str)> = tags
            .iter()
            .map(|t| (t.label.as_str(), t.score, t.source.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("rain", 0.93, "hark"),
                ("dog", 0.6, "hark"),
                ("Dog", 0.35, "audioset")
            ]
        );
    }

    #[test]
    fn configured_thresholds_and_the_cap_per_head_apply() {
        let b = bundle();
        let cfg = TagConfig {
            thresholds: [("hark".to_string(), 0.05)].into(),
            max_per_source: 2,
            binary_sensors: vec![],
        };
        let tags = cfg.select(&b, &[vec![0.6, 0.1, 0.93], vec![0.1, 0.2]]);
        let labels: Vec<&str> = tags.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["rain", "dog"]);
    }

    #[test]
    fn a_threshold_for_a_head_the_model_lacks_is_an_error_naming_it() {
        let cfg = TagConfig {
            thresholds: [("birds".to_string(), 0.5)].into(),
            ..TagConfig::default()
        };
        let err = cfg.validate(&bundle()).unwrap_err().to_string();
        assert!(
            err.contains("tags.thresholds.birds") && err.contains("hark, audioset"),
            "{err}"
        );
    }

    #[test]
    fn speech_is_known_only_when_a_head_has_a_speech_label() {
        let b = bundle();
        let cfg = TagConfig::default();
        // The hark head, first in the bundle, decides: AudioSet's Speech alone does not.
        let tags = cfg.select(&b, &[vec![0.0, 0.0, 0.0], vec![0.0, 0.9]]);
        assert_eq!(cfg.speech(&b, &tags), Some(false));
        let tags = cfg.select(&b, &[vec![0.0, 0.8, 0.0], vec![0.0, 0.0]]);
        assert_eq!(cfg.speech(&b, &tags), Some(true));
        let mut audioset_only = b.clone();
        audioset_only.labels[0] = vec!["dog".into(), "rain".into(), "cat".into()];
        let tags = cfg.select(&audioset_only, &[vec![0.0; 3], vec![0.0, 0.9]]);
        assert_eq!(cfg.speech(&audioset_only, &tags), Some(true));
        let mut none = b.clone();
        none.labels = vec![vec!["dog".into()], vec!["Dog".into()]];
        assert_eq!(cfg.speech(&none, &[]), None);
    }
}
