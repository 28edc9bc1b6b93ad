//! Every strategy under every parameter value `DecodeParams::validate` accepts, on scripted
//! distributions from peaked to flat with near-zero probabilities: no panic, no NaN, and a
//! caption of the vocabulary's words within `max_len`.

use proptest::prelude::*;

use super::testing::{SPECIAL, Scripted};
use super::{DecodeParams, Strategy as Decoding, decode};

const VOCAB: usize = 12;

/// A next-token distribution that depends on the prefix: some steps peaked (one token near 1,
/// the rest near 1e-30), some flat, the end token's share varying.
fn next(shape: u64) -> impl Fn(&[u32]) -> Vec<f32> {
    move |prefix: &[u32]| {
        let h = prefix.iter().fold(shape, |h, &t| {
            h.wrapping_mul(6364136223846793005)
                .wrapping_add(u64::from(t) + 1)
        });
        let mut p: Vec<f32> = (0..VOCAB as u64)
            .map(|i| match (h >> (i * 5)) % 4 {
                0 => 1e-30,
                1 => 1e-6,
                _ => ((h >> i) % 97 + 1) as f32,
            })
            .collect();
        p[usize::from(SPECIAL.pad as u8)] = 1e-30;
        p[usize::from(SPECIAL.bos as u8)] = 1e-30;
        let sum: f32 = p.iter().sum();
        p.iter().map(|x| x / sum).collect()
    }
}

/// Positive values from the smallest to the largest f32, log-uniform, and the edges.
fn positive() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::MIN_POSITIVE),
        Just(1e-45),
        Just(f32::MAX),
        Just(1.0),
        (-45.0f32..38.0).prop_map(|e| 10f32.powf(e).max(1e-45)),
    ]
}

fn params() -> impl Strategy<Value = DecodeParams> {
    let strategy = prop_oneof![
        Just(Decoding::Greedy),
        Just(Decoding::Beam),
        Just(Decoding::DiverseBeam),
        Just(Decoding::Sample),
        Just(Decoding::SampleRerank),
    ];
    (
        (strategy, 1usize..=4, 1usize..=3, any::<u64>(), 0usize..=4),
        (positive(), positive(), positive(), positive(), positive()),
        (
            0usize..=VOCAB,
            1usize..=8,
            1usize..=16,
            0usize..=16,
            0usize..=3,
        ),
    )
        .prop_map(
            |(
                (strategy, per_group, groups, seed, alternatives),
                (temperature, top_p, diversity, length, repetition),
                (top_k, samples, max_len, min_len, no_repeat_ngram),
            )| DecodeParams {
                strategy,
                beam_size: per_group * groups,
                groups,
                diversity_penalty: diversity,
                temperature,
                top_k,
                top_p: top_p.min(1.0),
                samples,
                min_len: min_len.min(max_len),
                max_len,
                length_penalty: length,
                repetition_penalty: repetition.max(1.0),
                no_repeat_ngram,
                seed,
                alternatives,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn any_accepted_parameters_decode_known_words_without_nan(p in params(), shape in any::<u64>()) {
        prop_assert!(p.validate().is_ok(), "{p:?}");
        let mut model = Scripted { next: next(shape), vocab: VOCAB, steps: 0 };
        let hyps = decode(&mut model, SPECIAL, &p).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert!(!hyps.is_empty() && hyps.len() <= 1 + p.alternatives);
        for h in &hyps {
            prop_assert!(!h.score.is_nan() && !h.logprob.is_nan(), "{h:?} under {p:?}");
            prop_assert!(h.tokens.len() <= p.max_len, "{h:?} under {p:?}");
            prop_assert!(
                h.tokens.iter().all(|&t| (t as usize) < VOCAB && t > SPECIAL.eos),
                "{h:?} under {p:?}"
            );
        }
    }
}
