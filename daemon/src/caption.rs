//! `hark caption`: captions audio files window by window with a bundle, for one-off use and
//! for evaluating bundles through exactly the daemon's code path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::decode::{self, DecodeParams, Stepper};
use crate::model::Model;
use crate::window::{Window, Windower};

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

/// One window of a file: captioned, or silent.
#[derive(Debug, Serialize)]
pub struct WindowCaption {
    /// The file.
    pub file: String,
    /// Window start, seconds from the file's start.
    pub start: f32,
    /// Window end, seconds.
    pub end: f32,
    /// RMS level of the window's audio, dBFS.
    pub level_dbfs: f32,
    /// Below the silence threshold: not captioned (`text` is null).
    pub silent: bool,
    /// Best caption.
    pub text: Option<String>,
    /// The model that made it.
    pub model: String,
    /// Tags at or over their thresholds, most probable first within each source.
    pub tags: Vec<Tag>,
    /// Its score (length-normalised log-probability).
    pub score: Option<f32>,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Each `--trigger` phrase's score under the window (absent without phrases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<PhraseScore>,
    /// Milliseconds spent per stage.
    pub timings_ms: Timings,
}

/// A phrase scored under a window: its length-normalised log-probability as the start of
/// the window's caption (0 is certain; the lower, the less the window sounds like it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseScore {
    /// The phrase as given.
    pub phrase: String,
    /// Its score.
    pub score: f32,
    /// What a `[[triggers]]` table compares with its threshold: `score` over the phrase's
    /// score under digital silence, plus the tag head's evidence when the phrase names one
    /// of its labels.
    pub trigger_score: f32,
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

impl TagConfig {
    /// Checks thresholds against the bundle's heads and ranges; the error names the key.
    pub fn validate(&self, bundle: &Bundle) -> std::result::Result<(), String> {
        for (name, t) in &self.thresholds {
            if !bundle.manifest.tags.iter().any(|h| &h.name == name) {
                let heads: Vec<&str> = bundle
                    .manifest
                    .tags
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect();
                return Err(format!(
                    "tags.thresholds.{name}: the model has no tag head \"{name}\" (it has: {})",
                    if heads.is_empty() {
                        "none".to_string()
                    } else {
                        heads.join(", ")
                    }
                ));
            }
            if !(*t > 0.0 && *t <= 1.0) {
                return Err(format!("tags.thresholds.{name} = {t}: must be in (0, 1]"));
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

/// An alternative caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Scoring the `--trigger` phrases.
    pub phrases: f64,
}

/// One line of `hark caption`'s text output: file, window, caption and tags with scores.
pub fn describe(w: &WindowCaption) -> String {
    let head = format!("{} [{:.1}-{:.1}s]", w.file, w.start, w.end);
    let Some(text) = &w.text else {
        return format!("{head} (silence, {:.1} dBFS)", w.level_dbfs);
    };
    let mut line = format!("{head} {text}");
    if !w.tags.is_empty() {
        let tags: Vec<String> = w
            .tags
            .iter()
            .map(|t| format!("{} {:.2}", t.label, t.score))
            .collect();
        line += &format!("  [{}]", tags.join(", "));
    }
    if !w.phrases.is_empty() {
        let phrases: Vec<String> = w
            .phrases
            .iter()
            .map(|p| format!("\"{}\" {:.2}", p.phrase, p.trigger_score))
            .collect();
        line += &format!("  {{{}}}", phrases.join(", "));
    }
    line
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Trigger phrases' silence baselines, by window length (a stream's last window is shorter):
/// each phrase's score under that many frames of digital silence (the front end's output for
/// zeros), what the model expects of it before hearing anything. Made once per length, the
/// first time a window of it is scored; shared by `hark caption --trigger` and the daemon.
#[derive(Debug, Default)]
pub struct Baselines(Vec<(usize, Vec<f32>)>);

impl Baselines {
    /// The baseline of `phrases` for windows of `frames` frames.
    pub fn get(
        &mut self,
        model: &dyn Captioner,
        params: &DecodeParams,
        phrases: &[Vec<u32>],
        frames: usize,
    ) -> Result<&[f32]> {
        let i = match self.0.iter().position(|(f, _)| *f == frames) {
            Some(i) => i,
            None => {
                let fe = &model.bundle().manifest.frontend;
                let value = ((fe.log_offset).ln() - fe.norm_mean) / fe.norm_std;
                let mel = vec![value; frames * fe.n_mels];
                let scores = model.caption_mel(&mel, params, phrases)?.phrase_scores;
                self.0.push((frames, scores));
                self.0.len() - 1
            }
        };
        Ok(&self.0[i].1)
    }
}

/// Captions `file` as it is read: one caption per window of the bundle's length, windows
/// `hop` apart (a file shorter than a window is one window), each handed to `emit` as soon
/// as it is done, so memory stays flat in file length and the first caption comes after one
/// window. Windows whose RMS level is below `silence_dbfs` are not captioned, as in
/// `hark run`, whose DSP thread cuts windows the same way ([`Windower`]).
pub fn caption_file(
    model: &dyn Captioner,
    file: &Path,
    params: &DecodeParams,
    tags: &TagConfig,
    silence_dbfs: f32,
    phrases: &[(String, Vec<u32>)],
    mut emit: impl FnMut(WindowCaption) -> Result<()>,
) -> Result<()> {
    let bundle = model.bundle();
    let m = &bundle.manifest;
    let stream = crate::wav::Stream::open(file)?;
    let mut windower = Windower::new(&m.frontend, stream.sample_rate(), m.window_frames())
        .with_context(|| format!("{}: cannot compute features", file.display()))?;
    let fps = m.frames_per_second();
    let tokens: Vec<Vec<u32>> = phrases.iter().map(|(_, t)| t.clone()).collect();
    let labels: Vec<Option<usize>> = phrases
        .iter()
        .map(|(p, _)| crate::triggers::phrase_label(bundle, p))
        .collect();
    let mut baselines = Baselines::default();
    let mut ready = Vec::new();
    let mut failed = None;
    // Front-end time since the last window: that window's share.
    let mut mel_ms = 0.0;
    let mut caption = |window: Window, mel_ms: f64| -> Result<()> {
        let (start, end) = (
            window.start_frame as f32 / fps,
            (window.start_frame as usize + window.frames) as f32 / fps,
        );
        let mut out = WindowCaption {
            file: file.display().to_string(),
            start,
            end,
            level_dbfs: window.level_dbfs,
            silent: true,
            text: None,
            model: m.name.clone(),
            tags: Vec::new(),
            score: None,
            tokens: Vec::new(),
            alternatives: Vec::new(),
            phrases: Vec::new(),
            timings_ms: Timings::default(),
        };
        if window.level_dbfs >= silence_dbfs {
            let c = model
                .caption_mel(&window.mel, params, &tokens)
                .with_context(|| format!("{}: window {start:.1}-{end:.1} s", file.display()))?;
            out.silent = false;
            out.tags = tags.select(bundle, &c.tag_probabilities);
            out.text = Some(c.text);
            out.score = Some(c.score);
            out.tokens = c.tokens;
            out.alternatives = c.alternatives;
            let baseline = if tokens.is_empty() {
                &[][..]
            } else {
                baselines.get(model, params, &tokens, window.frames)?
            };
            let head = c
                .tag_probabilities
                .first()
                .map_or(&[][..], |p| p.as_slice());
            let round = |x: f32| (x * 1000.0).round() / 1000.0;
            out.phrases = phrases
                .iter()
                .zip(&c.phrase_scores)
                .zip(baseline.iter().zip(&labels))
                .map(|(((phrase, _), &score), (&silence, &label))| PhraseScore {
                    phrase: phrase.clone(),
                    score: round(score),
                    trigger_score: round(crate::triggers::score(score, silence, label, head)),
                })
                .collect();
            out.timings_ms = Timings {
                mel: mel_ms,
                encoder: c.encoder_ms,
                decoding: c.decoding_ms,
                phrases: c.phrases_ms,
            };
        }
        emit(out)
    };
    stream.for_each(|block| {
        let t0 = Instant::now();
        windower.push(block, &mut ready);
        mel_ms += ms(t0);
        for window in ready.drain(..) {
            if let Err(e) = caption(window, std::mem::take(&mut mel_ms)) {
                failed = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let t0 = Instant::now();
    windower.finish(&mut ready);
    mel_ms += ms(t0);
    for window in ready.drain(..) {
        caption(window, std::mem::take(&mut mel_ms))?;
    }
    Ok(())
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
    /// Each tag head's probabilities, in `manifest.tags` order (empty without heads).
    pub tag_probabilities: Vec<Vec<f32>>,
    /// Each scored phrase's length-normalised log-probability (`decode::score_phrases`).
    pub phrase_scores: Vec<f32>,
    /// Encoder time, ms.
    pub encoder_ms: f64,
    /// Decoding time, ms.
    pub decoding_ms: f64,
    /// Phrase scoring time, ms.
    pub phrases_ms: f64,
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
    /// The ONNX graphs through ONNX Runtime, for benchmarks (`--features ort`, ORT_DYLIB_PATH).
    Ort,
}

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
    ) -> Result<Captioned>;
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
        #[cfg(feature = "ort")]
        Backend::Ort => std::sync::Arc::new(crate::ort::OrtModel::load(dir).with_context(context)?),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => anyhow::bail!(
            "the ort backend is for benchmarks: build hark with `--features ort` \
             (docs/PERFORMANCE.md)"
        ),
    };
    log::info!("{}", model.bundle().describe());
    Ok(model)
}

impl Captioner for Model {
    fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn caption_mel(
        &self,
        mel: &[f32],
        params: &DecodeParams,
        phrases: &[Vec<u32>],
    ) -> Result<Captioned> {
        let t0 = Instant::now();
        let encoded = self
            .encode(mel)
            .map_err(|e| anyhow::anyhow!("encoder failed: {e:#}"))?;
        let encoder_ms = ms(t0);
        let tags = self.tag_probabilities(&encoded).to_vec();
        decode_window(
            &self.bundle,
            &mut self.stepper(&encoded),
            params,
            encoder_ms,
            tags,
            phrases,
        )
    }
}

/// Decodes an encoded window with any runtime's stepper, then scores `phrases` under it.
pub fn decode_window<S: Stepper>(
    bundle: &Bundle,
    stepper: &mut S,
    params: &DecodeParams,
    encoder_ms: f64,
    tag_probabilities: Vec<Vec<f32>>,
    phrases: &[Vec<u32>],
) -> Result<Captioned> {
    let t0 = Instant::now();
    let hyps = decode::decode(stepper, bundle.special(), params).context("decoding failed")?;
    let decoding_ms = ms(t0);
    let t1 = Instant::now();
    let phrase_scores = decode::score_phrases(stepper, bundle.special(), phrases)
        .context("phrase scoring failed")?;
    let phrases_ms = ms(t1);
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
        tag_probabilities,
        phrase_scores,
        encoder_ms,
        decoding_ms,
        phrases_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle with two tag heads, `hark` (dog, speech, rain; threshold 0.5) and `audioset`
    /// (Dog, Speech; threshold 0.3); no graphs are needed to pick tags.
    fn bundle() -> Bundle {
        crate::bundle::testing::bundle(
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
        let err = cfg.validate(&bundle()).unwrap_err();
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
