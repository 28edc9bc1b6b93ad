//! Clip-level tags: which of the encoder's tag-head probabilities are published (per-head
//! thresholds from the bundle and the config), and whether they say a window holds speech.

use serde::Serialize;

use super::bundle::Bundle;
use crate::config::TagConfig;

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
