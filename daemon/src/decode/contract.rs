//! What every strategy shares: the one-step decoder contract ([`Stepper`]), the special
//! tokens, the decoding parameters and their rules, and hypotheses.

use serde::{Deserialize, Serialize};

/// A decoder that advances a batch of hypotheses by one token.
///
/// Implementations own the encoder memory and their recurrent state / KV cache; the batch
/// axis of that state is what beam search reorders through [`Stepper::select`].
pub trait Stepper {
    /// The decoder state for a batch of hypotheses.
    type State;

    /// The state of `batch` fresh hypotheses (before the first token).
    fn init(&mut self, batch: usize) -> anyhow::Result<Self::State>;

    /// Feeds one token per hypothesis, updates `state` and returns the logits, row-major
    /// `[tokens.len(), vocab]`.
    fn step(&mut self, tokens: &[u32], state: &mut Self::State) -> anyhow::Result<Vec<f32>>;

    /// A new state holding rows `rows` of `state`, in that order (rows may repeat).
    fn select(&mut self, state: &Self::State, rows: &[usize]) -> anyhow::Result<Self::State>;

    /// Vocabulary size (logits per row).
    fn vocab(&self) -> usize;
}

/// Ids of the special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Fed as the first token.
    pub bos: u32,
    /// Ends a caption.
    pub eos: u32,
    /// Padding; never generated.
    pub pad: u32,
}

/// Decoding strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
// One spelling everywhere (CLI, hark.toml, bundles, MQTT): snake_case.
#[value(rename_all = "snake_case")]
pub enum Strategy {
    /// The most probable token at every step.
    Greedy,
    /// Beam search of `beam_size`; stops once `beam_size` hypotheses have ended.
    Beam,
    /// Diverse beam search (Vijayakumar et al. 2018): `groups` groups of
    /// `beam_size / groups`; a group is penalised by `diversity_penalty` for each earlier
    /// group that chose the same token at the same step.
    DiverseBeam,
    /// Ancestral sampling with `temperature`, `top_k` and `top_p`.
    Sample,
    /// Sample and rerank: `samples` nucleus samples (`temperature`, `top_p`),
    /// rescored by length-normalised log-probability under the untempered model; samples
    /// that loop or repeat phrases are rejected.
    SampleRerank,
}

/// How to decode, with every parameter; each strategy reads the ones it needs. Bundles
/// carry defaults; config and CLI override single keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeParams {
    /// The strategy.
    pub strategy: Strategy,
    /// Hypotheses kept per step (beam, diverse_beam; a multiple of `groups`).
    pub beam_size: usize,
    /// Beam groups (diverse_beam).
    pub groups: usize,
    /// Log-probability subtracted per earlier group choosing a token (diverse_beam).
    pub diversity_penalty: f32,
    /// Logits are divided by this before sampling (sample, sample_rerank).
    pub temperature: f32,
    /// Keep only the k most probable tokens, 0 = all (sample).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p (sample, sample_rerank).
    pub top_p: f32,
    /// Samples drawn (sample_rerank).
    pub samples: usize,
    /// Fewest generated tokens before the end token is allowed.
    pub min_len: usize,
    /// Most generated tokens (the end token included).
    pub max_len: usize,
    /// Hypothesis score is `sum log p / len^length_penalty` (0 = raw sum).
    pub length_penalty: f32,
    /// CTRL-style penalty (> 1 discourages) on tokens already generated.
    pub repetition_penalty: f32,
    /// Forbid repeating any n-gram of this size (0 = off).
    pub no_repeat_ngram: usize,
    /// Seed of the sampling strategies; equal seeds give equal captions.
    pub seed: u64,
    /// Alternatives returned besides the best caption.
    pub alternatives: usize,
}

impl Default for DecodeParams {
    fn default() -> Self {
        Self {
            strategy: Strategy::Greedy,
            beam_size: 3,
            groups: 1,
            diversity_penalty: 0.5,
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            samples: 8,
            min_len: 1,
            max_len: 30,
            length_penalty: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram: 0,
            seed: 0,
            alternatives: 0,
        }
    }
}

/// Why decoding parameters were refused; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// A value outside its range.
    #[error("decoding.{key}: must be {allowed}")]
    OutOfRange {
        /// The key, as written in configs and commands.
        key: &'static str,
        /// The values it may take.
        allowed: &'static str,
    },
    /// An unknown key or a value of the wrong type (serde's message names it).
    #[error("decoding: {0}")]
    Malformed(serde_json::Error),
    /// More tokens than the model's fixed-size state holds.
    #[error("decoding.max_len = {max_len}: this model allows at most {limit} (its tokens.max_len)")]
    OverModel {
        /// The requested `max_len`.
        max_len: usize,
        /// The model's `tokens.max_len`.
        limit: usize,
    },
}

impl DecodeParams {
    /// Checks the parameters; the error names the key and the allowed values.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |key, allowed| Err(ParamError::OutOfRange { key, allowed });
        if self.max_len == 0 || self.max_len > 512 {
            return bad("max_len", "in 1..=512");
        }
        if self.min_len > self.max_len {
            return bad("min_len", "at most max_len");
        }
        if !(self.length_penalty.is_finite() && self.length_penalty >= 0.0) {
            return bad("length_penalty", "a finite number >= 0");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty >= 1.0) {
            return bad("repetition_penalty", "a finite number >= 1");
        }
        if self.beam_size == 0 || self.beam_size > 64 {
            return bad("beam_size", "in 1..=64");
        }
        if self.groups == 0 || !self.beam_size.is_multiple_of(self.groups) {
            return bad("groups", "at least 1 and a divisor of beam_size");
        }
        if !(self.diversity_penalty.is_finite() && self.diversity_penalty >= 0.0) {
            return bad("diversity_penalty", "a finite number >= 0");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("temperature", "a finite number > 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "in (0, 1]");
        }
        if self.samples == 0 || self.samples > 64 {
            return bad("samples", "in 1..=64");
        }
        if self.alternatives > 64 {
            return bad("alternatives", "in 0..=64");
        }
        Ok(())
    }

    /// `validate`, and `max_len` at most the model's `tokens.max_len` (`limit`): fixed-size
    /// states (a transformer's KV cache) have no room beyond it. A bundle's own defaults and
    /// every override are held to it.
    pub fn validate_for(&self, limit: usize) -> Result<(), ParamError> {
        self.validate()?;
        if self.max_len > limit {
            return Err(ParamError::OverModel {
                max_len: self.max_len,
                limit,
            });
        }
        Ok(())
    }

    /// These parameters with the keys of `overrides` replaced, checked by `validate_for`.
    /// Used for the config file's `[decoding]` table, the command line and `set` commands.
    pub fn with_overrides(
        &self,
        overrides: &serde_json::Map<String, serde_json::Value>,
        limit: usize,
    ) -> Result<Self, ParamError> {
        let value = serde_json::to_value(self).map_err(ParamError::Malformed)?;
        let serde_json::Value::Object(mut obj) = value else {
            let e = <serde_json::Error as serde::de::Error>::custom("not a table");
            return Err(ParamError::Malformed(e));
        };
        for (k, v) in overrides {
            obj.insert(k.clone(), v.clone());
        }
        let params: Self = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(ParamError::Malformed)?;
        params.validate_for(limit)?;
        Ok(params)
    }
}

/// One decoded caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Generated token ids, without the start and end tokens.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of every generated token (the end token included).
    pub logprob: f32,
    /// The ranking score: `logprob / len^length_penalty`.
    pub score: f32,
}

impl Hypothesis {
    /// The hypothesis `tokens` ended by the end token, with its total log-probability; the
    /// score counts the end token in the length.
    pub(super) fn ended(tokens: Vec<u32>, logprob: f32, length_penalty: f32) -> Self {
        let len = tokens.len() + 1;
        // A huge length penalty makes the divisor infinite: -inf / inf would be NaN, and an
        // impossible caption stays the worst, not unordered.
        let score = if logprob == f32::NEG_INFINITY {
            f32::NEG_INFINITY
        } else {
            logprob / (len as f32).powf(length_penalty)
        };
        Self {
            tokens,
            logprob,
            score,
        }
    }
}

/// A hypothesis still being extended.
pub(super) struct Live {
    pub(super) tokens: Vec<u32>,
    pub(super) logprob: f32,
}

impl Live {
    /// The empty hypothesis every search starts from.
    pub(super) fn root() -> Self {
        Self {
            tokens: Vec::new(),
            logprob: 0.0,
        }
    }
}
