//! Decoding strategies over a one-step decoder: greedy, beam, diverse beam, sampling and
//! sample-and-rerank. Pure logic: the model is reached only through [`Stepper`], so every
//! strategy is tested here on scripted distributions.

mod contract;
mod logits;
#[cfg(test)]
mod proptests;
mod sample;
mod score;
mod search;

pub use score::score_phrases;

pub use contract::{DecodeParams, Hypothesis, ParamError, SpecialTokens, Stepper, Strategy};

/// Decodes with `params`; returns hypotheses best first (at least one, at most
/// `1 + params.alternatives`, distinct token sequences).
pub fn decode<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    params: &DecodeParams,
) -> anyhow::Result<Vec<Hypothesis>> {
    params.validate()?;
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
