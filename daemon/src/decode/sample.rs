//! Sampling strategies: plain ancestral sampling and sample-and-rerank.

use super::contract::{DecodeParams, Hypothesis, Live, SpecialTokens, Stepper};
use super::logits::process_row;

/// SplitMix64: tiny, seedable and identical on every platform and version, so a seed
/// reproduces its captions forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws a token from log-probabilities `lp` tempered by `temperature` and truncated to
/// the `top_k` most probable (0 = all) and to the smallest set reaching `top_p`.
fn draw(lp: &[f32], temperature: f32, top_k: usize, top_p: f32, rng: &mut SplitMix64) -> u32 {
    let mut order: Vec<usize> = (0..lp.len()).filter(|&t| lp[t].is_finite()).collect();
    order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
    if top_k > 0 {
        order.truncate(top_k);
    }
    // Log-sum-exp safe for any positive temperature: the difference to the best token is
    // taken before dividing, in f64, so a tiny temperature gives the best token probability
    // 1 and the others 0 (dividing first overflowed to -inf - -inf = NaN below 1e-38).
    let best = f64::from(lp[order[0]]);
    let temperature = f64::from(temperature);
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&t| ((f64::from(lp[t]) - best) / temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    let mut cumulative = 0.0;
    let mut keep = probs.len();
    for (i, p) in probs.iter_mut().enumerate() {
        *p /= total;
        cumulative += *p;
        if cumulative >= top_p as f64 {
            keep = i + 1;
            break;
        }
    }
    let mass: f64 = probs[..keep].iter().sum();
    let mut u = rng.next_f64() * mass;
    for (i, p) in probs[..keep].iter().enumerate() {
        if u < *p {
            return order[i] as u32;
        }
        u -= p;
    }
    order[keep - 1] as u32
}

/// `n` independent samples decoded as one batch. Each hypothesis's log-probability is the
/// untempered model's, so samples are comparable with beam hypotheses.
pub fn sample<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    params: &DecodeParams,
    n: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
) -> anyhow::Result<Vec<Hypothesis>> {
    let vocab = stepper.vocab();
    let mut rng = SplitMix64(params.seed);
    let mut state = stepper.init(n)?;
    let mut live: Vec<Live> = (0..n).map(|_| Live::root()).collect();
    let mut last = vec![special.bos; n];
    let mut done = Vec::new();
    while !live.is_empty() {
        let logits = stepper.step(&last, &mut state)?;
        let mut rows = Vec::new();
        let mut next = Vec::new();
        for (i, mut hyp) in live.into_iter().enumerate() {
            let mut row = logits[i * vocab..][..vocab].to_vec();
            process_row(&mut row, &hyp.tokens, params, special);
            if !row.iter().any(|l| l.is_finite()) {
                continue; // every token banned: this sample cannot continue
            }
            let t = draw(&row, temperature, top_k, top_p, &mut rng);
            hyp.logprob += row[t as usize];
            if t == special.eos {
                done.push(Hypothesis::ended(
                    hyp.tokens,
                    hyp.logprob,
                    params.length_penalty,
                ));
            } else {
                hyp.tokens.push(t);
                rows.push(i);
                next.push(hyp);
            }
        }
        live = next;
        if rows.is_empty() {
            break;
        }
        state = stepper.select(&state, &rows)?;
        last = live
            .iter()
            .map(|h| *h.tokens.last().expect("extended"))
            .collect();
    }
    Ok(done)
}

/// A caption reads fluently if no token directly repeats and no bigram occurs twice
/// (the loops "a dog a dog a dog" and stutters "beep beep" of weak models).
pub fn fluent(tokens: &[u32]) -> bool {
    if tokens.windows(2).any(|w| w[0] == w[1]) {
        return false;
    }
    let mut bigrams = std::collections::HashSet::new();
    tokens.windows(2).all(|w| bigrams.insert((w[0], w[1])))
}

/// Sample-and-rerank: `samples` nucleus samples; disfluent ones are dropped (unless all
/// are), the rest ranked by length-normalised log-probability.
pub fn rerank<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    params: &DecodeParams,
    samples: usize,
    temperature: f32,
    top_p: f32,
) -> anyhow::Result<Vec<Hypothesis>> {
    let all = sample(stepper, special, params, samples, temperature, 0, top_p)?;
    let fluent_ones: Vec<Hypothesis> = all.iter().filter(|h| fluent(&h.tokens)).cloned().collect();
    Ok(if fluent_ones.is_empty() {
        all
    } else {
        fluent_ones
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SPECIAL, Scripted};
    use super::super::{DecodeParams, Strategy, decode};
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // Probabilities .5 (tok 3), .3 (tok 4), .2 (tok 5): top_p .7 keeps {3, 4}.
        let lp = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            0.5f32.ln(),
            0.3f32.ln(),
            0.2f32.ln(),
        ];
        let mut rng = SplitMix64(7);
        let mut counts = [0usize; 6];
        for _ in 0..4000 {
            counts[draw(&lp, 1.0, 0, 0.7, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[5], 0, "token outside the nucleus was drawn");
        // Renormalised: 3 with .5/.8 = .625.
        let share = counts[3] as f64 / 4000.0;
        assert!((share - 0.625).abs() < 0.03, "share of token 3: {share}");
    }

    #[test]
    fn top_k_one_is_greedy_and_low_temperature_concentrates_the_mass() {
        let lp = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            0.1f32.ln(),
            0.45f32.ln(),
            0.45f32.ln(),
        ];
        let mut rng = SplitMix64(1);
        assert!((0..100).all(|_| draw(&lp, 1.0, 1, 1.0, &mut rng) == 3));
        let lp = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            0.2f32.ln(),
            0.8f32.ln(),
        ];
        let cold = (0..1000)
            .filter(|_| draw(&lp, 0.1, 0, 1.0, &mut rng) == 3)
            .count();
        // At T = 0.1 the odds become 4^10 : 1.
        assert!(cold >= 999, "{cold}");
        // Any positive temperature, down to the smallest f32: the most probable token (the
        // probe's 1e-39 and 1e-45 drew the least likely, through NaN probabilities).
        for t in [
            1e-30,
            1e-38,
            1e-39,
            1e-45,
            f32::MIN_POSITIVE,
            1e30,
            f32::MAX,
        ] {
            for top_p in [1.0, 0.5, f32::MIN_POSITIVE] {
                let token = draw(&lp, t, 0, top_p, &mut rng);
                if t < 1.0 || top_p < 0.6 {
                    assert_eq!(token, 3, "temperature {t}, top_p {top_p}");
                } else {
                    assert!(token >= 2, "temperature {t}: a token of no probability");
                }
            }
        }
    }

    #[test]
    fn equal_seeds_give_equal_samples_and_different_seeds_differ() {
        let next = |_: &[u32]| vec![0.0, 0.0, 0.2, 0.2, 0.2, 0.2, 0.2];
        let run = |seed| {
            let mut s = Scripted {
                next,
                vocab: 7,
                steps: 0,
            };
            let p = DecodeParams {
                strategy: Strategy::Sample,
                top_p: 1.0,
                alternatives: 4,
                seed,
                ..Default::default()
            };
            decode(&mut s, SPECIAL, &p)
                .unwrap()
                .into_iter()
                .map(|h| h.tokens)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn rerank_rejects_loops_and_stutters() {
        assert!(fluent(&[3, 4, 5, 6]));
        assert!(!fluent(&[3, 3, 4]));
        assert!(!fluent(&[3, 4, 5, 3, 4]));
    }

    #[test]
    fn sample_and_rerank_prefers_the_fluent_caption_over_a_likelier_loop() {
        // After bos: "a" .6, "b" .4. After "a": "a" .9 (a stutter), eos .1.
        // After "b": "c" 1. After "b c": eos 1. So "a a …" is likely but disfluent.
        let next = |p: &[u32]| match p {
            [1] => vec![0.0, 0.0, 0.0, 0.6, 0.4, 0.0],
            [1, 3] => vec![0.0, 0.0, 0.1, 0.9, 0.0, 0.0],
            [1, 4] => vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            _ => vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        };
        let mut s = Scripted {
            next,
            vocab: 6,
            steps: 0,
        };
        let p = DecodeParams {
            strategy: Strategy::SampleRerank,
            samples: 16,
            top_p: 1.0,
            length_penalty: 1.0,
            seed: 3,
            ..Default::default()
        };
        let out = decode(&mut s, SPECIAL, &p).unwrap();
        assert!(out.iter().all(|h| fluent(&h.tokens)), "{out:?}");
        assert_eq!(out[0].tokens, [4, 5]);
    }
}
