//! One window's judgement, the same for the daemon's inference thread and `hark caption`:
//! silence → caption → tags → trigger scores → the speech gate. It holds no thread, queue or
//! sink: it says what may be published about a window, and the callers publish or print it.

use anyhow::{Context, Result};

use crate::config::{SpeechPolicy, TagConfig};
use crate::decode::DecodeParams;
use crate::model::Captioner;
use crate::model::captioner::ModelOutput;
use crate::pipeline::privacy::{Findings, Gate};
use crate::pipeline::triggers::{Baselines, Hit, Phrase, Triggers};
use crate::sounds::{SoundScore, Sounds};

/// What a window comes to.
pub enum Verdict {
    /// Quieter than the silence threshold: not captioned.
    Silent,
    /// Speech under `privacy.speech = "drop"`: nothing about it is published.
    Dropped,
    /// What may be published about the window.
    Heard(Box<Heard>),
}

/// A captioned window after the speech gate.
pub struct Heard {
    /// Caption, score, alternatives, tags and fired triggers as they may be published.
    pub findings: Findings<Hit>,
    /// Whether a tag head heard speech (None: the model has no speech label).
    pub speech: Option<bool>,
    /// The speech gate replaced the caption.
    pub redacted: bool,
    /// The caption's token ids (empty when redacted).
    pub tokens: Vec<u32>,
    /// Each extra phrase's raw score, trigger score and whether the caption or an
    /// alternative says it, in order (empty when redacted).
    pub phrases: Vec<(f32, f32, bool)>,
    /// Every learned sound's score on the window. Sounds are learned only from windows
    /// without speech (unless `privacy.speech = "caption"`), so they are scored on
    /// redacted windows too.
    pub sounds: Vec<SoundScore>,
    /// The window's sound embedding, to learn it (none when redacted or the bundle has no
    /// `[sounds]`).
    pub embedding: Option<Vec<f32>>,
    /// The model's output timings: encoder, decoding, phrases (ms).
    pub timings: [f64; 3],
}

/// The settings a window is judged by, and the state that carries over between windows
/// (silence baselines of the trigger phrases).
pub struct Judge {
    /// Windows quieter than this (RMS, dBFS) are silent.
    pub silence_dbfs: f32,
    /// Tag thresholds.
    pub tags: TagConfig,
    /// What happens to speech windows.
    pub speech: SpeechPolicy,
    triggers: Triggers,
    /// Phrases scored on every window besides the triggers' (`hark caption --trigger`).
    extra: Vec<Phrase>,
    /// The triggers' phrases and then the extra ones, as token ids.
    phrases: Vec<Vec<u32>>,
    baselines: Baselines,
    sounds: Sounds,
}

impl Judge {
    /// A judge with `triggers` and `extra` phrases scored on every captioned window.
    pub fn new(
        silence_dbfs: f32,
        tags: TagConfig,
        speech: SpeechPolicy,
        triggers: Triggers,
        extra: Vec<Phrase>,
    ) -> Self {
        let mut judge = Self {
            silence_dbfs,
            tags,
            speech,
            triggers: Triggers::default(),
            extra,
            phrases: Vec::new(),
            baselines: Baselines::default(),
            sounds: Sounds::default(),
        };
        judge.set_triggers(triggers);
        judge
    }

    /// Replaces the triggers (a `triggers` command); known phrases keep their baselines.
    pub fn set_triggers(&mut self, triggers: Triggers) {
        self.phrases = triggers.tokens();
        self.phrases
            .extend(self.extra.iter().map(|p| p.tokens.clone()));
        self.triggers = triggers;
    }

    /// Replaces the learned sounds scored on every window.
    pub fn set_sounds(&mut self, sounds: Sounds) {
        self.sounds = sounds;
    }

    /// The learned sounds.
    pub fn sounds(&self) -> &Sounds {
        &self.sounds
    }

    /// The extra phrases, as given.
    pub fn extra(&self) -> Vec<String> {
        self.extra.iter().map(|p| p.text.clone()).collect()
    }

    /// Judges a window of `frames` frames of log-mel `mel` (frame-major) whose audio had RMS
    /// level `level_dbfs`, decoding with `params`.
    pub fn judge(
        &mut self,
        model: &dyn Captioner,
        params: &DecodeParams,
        mel: &[f32],
        frames: usize,
        level_dbfs: f32,
    ) -> Result<Verdict> {
        if level_dbfs < self.silence_dbfs {
            return Ok(Verdict::Silent);
        }
        let baseline = if self.phrases.is_empty() {
            Vec::new()
        } else {
            self.baselines
                .get(model, params, &self.phrases, frames)
                .context("cannot score the trigger phrases under silence")?
        };
        let out = model.caption_mel(mel, params, &self.phrases)?;
        Ok(self.gate(model, out, &baseline))
    }

    /// Tags, trigger scores and the speech gate of a model's output.
    fn gate(&self, model: &dyn Captioner, out: ModelOutput, baseline: &[f32]) -> Verdict {
        let bundle = model.bundle();
        let tags = self.tags.select(bundle, &out.tag_probabilities);
        let speech = self.tags.speech(bundle, &tags);
        let head = out
            .tag_probabilities
            .first()
            .map_or(&[][..], |p| p.as_slice());
        // What the window's captions say counts towards a phrase (the caption model may put
        // it after another sound, where the phrase's own score does not look).
        let captions: Vec<&str> = std::iter::once(out.text.as_str())
            .chain(out.alternatives.iter().map(|a| a.text.as_str()))
            .collect();
        let n = self.phrases.len() - self.extra.len();
        let hits = self.triggers.fired(
            &out.phrase_scores[..n],
            &baseline[..n.min(baseline.len())],
            head,
            &captions,
        );
        let cal = self.triggers.calibration();
        let phrases: Vec<(f32, f32, bool)> = self
            .extra
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let raw = out.phrase_scores[n + i];
                let (score, said) = p.score(raw, baseline[n + i], head, &captions, cal);
                (raw, score, said)
            })
            .collect();
        let findings = Findings {
            text: out.text,
            score: Some(out.score),
            alternatives: out.alternatives,
            tags,
            hits,
        };
        let timings = [out.encoder_ms, out.decoding_ms, out.phrases_ms];
        let sounds = out
            .embedding
            .as_deref()
            .map_or_else(Vec::new, |e| self.sounds.score(e));
        match self.speech.gate(speech, findings) {
            Gate::Drop => Verdict::Dropped,
            Gate::Publish { findings, redacted } => Verdict::Heard(Box::new(Heard {
                findings,
                speech,
                redacted,
                tokens: if redacted { Vec::new() } else { out.tokens },
                phrases: if redacted { Vec::new() } else { phrases },
                sounds,
                embedding: if redacted { None } else { out.embedding },
                timings,
            })),
        }
    }
}
