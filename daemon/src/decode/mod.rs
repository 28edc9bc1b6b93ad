//! Decoding strategies over a one-step decoder: greedy, beam, diverse beam, sampling and
//! sample-and-rerank. Pure logic: the model is reached only through [`Stepper`], so every
//! strategy is tested here on scripted distributions.

mod logits;
mod sample;
mod score;
mod search;

pub use score::score_phrases;

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
    /// Seed 003's sample-and-rerank: `samples` nucleus samples (`temperature`, `top_p`),
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

impl DecodeParams {
    /// Checks the parameters; the error names the key and the allowed values.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, allowed: &str| Err(format!("decoding.{key}: must be {allowed}"));
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
    fn ended(tokens: Vec<u32>, logprob: f32, length_penalty: f32) -> Self {
        let len = tokens.len() + 1;
        Self {
            tokens,
            logprob,
            score: logprob / (len as f32).powf(length_penalty),
        }
    }
}

/// A hypothesis still being extended.
struct Live {
    tokens: Vec<u32>,
    logprob: f32,
}

impl Live {
    /// The empty hypothesis every search starts from.
    fn root() -> Self {
        Self {
            tokens: Vec::new(),
            logprob: 0.0,
        }
    }
}

/// Decodes with `params`; returns hypotheses best first (at least one, at most
/// `1 + params.alternatives`, distinct token sequences).
pub fn decode<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    params: &DecodeParams,
) -> anyhow::Result<Vec<Hypothesis>> {
    params.validate().map_err(anyhow::Error::msg)?;
    let p = params;
    let mut hyps = match p.strategy {
        Strategy::Greedy => search::beam(stepper, special, p, 1, 1, 0.0)?,
        Strategy::Beam => search::beam(stepper, special, p, p.beam_size, 1, 0.0)?,
        Strategy::DiverseBeam => search::beam(
            stepper,
            special,
            p,
            p.beam_size,
            p.groups,
            p.diversity_penalty,
        )?,
        Strategy::Sample => sample::sample(
            stepper,
            special,
            p,
            1 + p.alternatives,
            p.temperature,
            p.top_k,
            p.top_p,
        )?,
        Strategy::SampleRerank => {
            sample::rerank(stepper, special, p, p.samples, p.temperature, p.top_p)?
        }
    };
    // Best first; ties keep the strategy's order. Duplicates add nothing as alternatives.
    hyps.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut seen = std::collections::HashSet::new();
    hyps.retain(|h| seen.insert(h.tokens.clone()));
    hyps.truncate(1 + params.alternatives);
    Ok(hyps)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scripted decoder: the next-token distribution is a function of the prefix.

    use super::{SpecialTokens, Stepper};

    /// The special tokens of every scripted vocabulary: 0 pad, 1 bos, 2 eos.
    pub const SPECIAL: SpecialTokens = SpecialTokens {
        bos: 1,
        eos: 2,
        pad: 0,
    };

    /// State: the tokens fed so far, per hypothesis.
    pub struct Scripted<F: Fn(&[u32]) -> Vec<f32>> {
        /// Prefix (including BOS) → probabilities over the vocabulary.
        pub next: F,
        /// Vocabulary size.
        pub vocab: usize,
        /// Decoder steps run, summed over the batch.
        pub steps: usize,
    }

    impl<F: Fn(&[u32]) -> Vec<f32>> Stepper for Scripted<F> {
        type State = Vec<Vec<u32>>;

        fn init(&mut self, batch: usize) -> anyhow::Result<Self::State> {
            Ok(vec![Vec::new(); batch])
        }

        fn step(&mut self, tokens: &[u32], state: &mut Self::State) -> anyhow::Result<Vec<f32>> {
            let mut out = Vec::new();
            for (prefix, &t) in state.iter_mut().zip(tokens) {
                prefix.push(t);
                self.steps += 1;
                let p = (self.next)(prefix);
                assert_eq!(p.len(), self.vocab);
                out.extend(p.iter().map(|&p| p.ln()));
            }
            Ok(out)
        }

        fn select(&mut self, state: &Self::State, rows: &[usize]) -> anyhow::Result<Self::State> {
            Ok(rows.iter().map(|&r| state[r].clone()).collect())
        }

        fn vocab(&self) -> usize {
            self.vocab
        }
    }
}
