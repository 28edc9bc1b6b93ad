//! Greedy, beam and diverse beam search: one algorithm, parameterised by beam width and
//! number of groups (greedy is one group of width one).
//!
//! Per step and per group: every live hypothesis is expanded by every token (after logit
//! processing, and for group g > 0 after subtracting `diversity_penalty` for each earlier
//! group that picked the token at this step); candidates are ranked by summed log-prob
//! (ties: lower hypothesis index, then lower token id); walking down that ranking, an end
//! token finishes its hypothesis and any other token extends it, until the group has
//! `width` live hypotheses again. A group stops once `width` of its hypotheses have ended
//! (HF's `early_stopping=True`). The reference decoder in the trainer implements the same.

use super::contract::{DecodeParams, Hypothesis, Live, SpecialTokens, Stepper};
use super::logits::process_row;

/// Runs (diverse) beam search with `beam_size` hypotheses split into `groups` groups.
// Long on purpose: the beam search reads best as one loop (expand, prune, finish) over its
// groups; its pieces (process_row, Live, Hypothesis) live beside it.
pub fn beam<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    params: &DecodeParams,
    beam_size: usize,
    groups: usize,
    diversity_penalty: f32,
) -> anyhow::Result<Vec<Hypothesis>> {
    let width = beam_size / groups;
    let vocab = stepper.vocab();
    // All groups' live hypotheses share one batched state, group after group.
    let mut live: Vec<Vec<Live>> = (0..groups).map(|_| vec![Live::root()]).collect();
    let mut state = stepper.init(groups)?;
    let mut last: Vec<u32> = vec![special.bos; groups];
    let mut finished: Vec<Vec<Hypothesis>> = (0..groups).map(|_| Vec::new()).collect();

    while live.iter().any(|g| !g.is_empty()) {
        let logits = stepper.step(&last, &mut state)?;
        let mut rows: Vec<usize> = Vec::new();
        let mut next_live: Vec<Vec<Live>> = Vec::with_capacity(groups);
        let mut chosen_now = vec![0u32; vocab];
        let mut row_base = 0;
        for (g, group) in live.iter().enumerate() {
            let mut candidates: Vec<(f32, usize, u32)> = Vec::with_capacity(group.len() * vocab);
            for (h, hyp) in group.iter().enumerate() {
                let mut row = logits[(row_base + h) * vocab..][..vocab].to_vec();
                process_row(&mut row, &hyp.tokens, params, special);
                for (t, &lp) in row.iter().enumerate() {
                    let penalty = diversity_penalty * chosen_now[t] as f32;
                    if lp.is_finite() {
                        candidates.push((hyp.logprob + lp - penalty, h, t as u32));
                    }
                }
            }
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut kept = Vec::new();
            for (score, h, t) in candidates {
                if kept.len() == width || finished[g].len() >= width {
                    break;
                }
                let parent = &group[h];
                // Scores carry the diversity penalty for ranking only; the hypothesis keeps
                // its model log-probability.
                let lp = score - parent.logprob + diversity_penalty * chosen_now[t as usize] as f32;
                if t == special.eos {
                    let ended = Hypothesis::ended(
                        parent.tokens.clone(),
                        parent.logprob + lp,
                        params.length_penalty,
                    );
                    finished[g].push(ended);
                } else {
                    let mut tokens = parent.tokens.clone();
                    tokens.push(t);
                    kept.push(Live {
                        tokens,
                        logprob: parent.logprob + lp,
                    });
                    rows.push(row_base + h);
                }
            }
            if finished[g].len() >= width {
                rows.truncate(rows.len() - kept.len());
                kept.clear();
            }
            for k in &kept {
                chosen_now[*k.tokens.last().expect("extended") as usize] += 1;
            }
            row_base += group.len();
            next_live.push(kept);
        }
        live = next_live;
        if rows.is_empty() {
            break;
        }
        state = stepper.select(&state, &rows)?;
        last = live
            .iter()
            .flatten()
            .map(|h| *h.tokens.last().expect("extended"))
            .collect();
    }
    Ok(finished.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SPECIAL, Scripted};
    use super::super::{DecodeParams, Strategy, decode};

    /// Vocabulary: 0 pad, 1 bos, 2 eos, 3 "a", 4 "b".
    /// After bos: a 0.5, b 0.4, eos 0.1. After "a": eos 0.3, a 0.35, b 0.35.
    /// After "b": eos 0.9, a 0.05, b 0.05. Longer prefixes: eos 1.
    fn garden_path(prefix: &[u32]) -> Vec<f32> {
        match prefix {
            [1] => vec![0.0, 0.0, 0.1, 0.5, 0.4],
            [1, 3] => vec![0.0, 0.0, 0.3, 0.35, 0.35],
            [1, 4] => vec![0.0, 0.0, 0.9, 0.05, 0.05],
            _ => vec![0.0, 0.0, 1.0, 0.0, 0.0],
        }
    }

    fn run(p: DecodeParams) -> Vec<(Vec<u32>, f32)> {
        let mut s = Scripted {
            next: garden_path,
            vocab: 5,
            steps: 0,
        };
        decode(&mut s, SPECIAL, &p)
            .unwrap()
            .into_iter()
            .map(|h| (h.tokens, h.logprob))
            .collect()
    }

    /// Raw log-prob ranking, the end token allowed at once.
    fn params(strategy: Strategy) -> DecodeParams {
        DecodeParams {
            strategy,
            length_penalty: 0.0,
            min_len: 0,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_follows_the_locally_best_token_into_the_garden_path() {
        // Greedy: "a" (0.5), then "a" (0.35, ties with "b": lower id wins), then eos (1.0).
        let out = run(params(Strategy::Greedy));
        assert_eq!(out[0].0, [3, 3]);
        assert!((out[0].1 - (0.5f32 * 0.35).ln()).abs() < 1e-5);
    }

    #[test]
    fn beam_of_two_finds_the_globally_best_caption() {
        // By hand (raw log-probs, length_penalty 0). Step 1 keeps "a" (.5) and "b" (.4).
        // Step 2 ranks b+eos .36 (ends), a+a .175, a+b .175 (kept; a+eos .15 is not reached).
        // Step 3: "a a" ends first (.175): two ended, the search stops.
        let out = run(DecodeParams {
            beam_size: 2,
            alternatives: 1,
            ..params(Strategy::Beam)
        });
        assert_eq!(out[0].0, [4]);
        assert!((out[0].1 - 0.36f32.ln()).abs() < 1e-5);
        assert_eq!(out[1].0, [3, 3]);
        assert!((out[1].1 - 0.175f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn scores_are_length_normalised_and_ranked() {
        let mut s = Scripted {
            next: garden_path,
            vocab: 5,
            steps: 0,
        };
        let p = DecodeParams {
            strategy: Strategy::Beam,
            beam_size: 3,
            length_penalty: 1.0,
            alternatives: 5,
            ..Default::default()
        };
        let out = decode(&mut s, SPECIAL, &p).unwrap();
        assert!(out.len() >= 2);
        for h in &out {
            // Length counts the end token.
            let len = h.tokens.len() + 1;
            assert!((h.score - h.logprob / len as f32).abs() < 1e-6);
        }
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn diverse_beam_groups_start_with_different_tokens() {
        // Two groups of width one: group 0 takes "a"; group 1 is penalised 10 for "a" and
        // so takes "b" — plain beam search of width 1 per group would give "a" twice.
        let out = run(DecodeParams {
            beam_size: 2,
            groups: 2,
            diversity_penalty: 10.0,
            alternatives: 1,
            ..params(Strategy::DiverseBeam)
        });
        let firsts: Vec<u32> = out.iter().map(|(t, _)| t[0]).collect();
        assert!(firsts.contains(&3) && firsts.contains(&4), "{out:?}");
        // Log-probs are the model's, without the penalty: "b" then eos = 0.36.
        let b = out.iter().find(|(t, _)| t[0] == 4).unwrap();
        assert!((b.1 - 0.36f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn beam_state_rows_follow_their_hypotheses() {
        // The scripted state is the prefix itself: if rows were mis-selected, the model
        // would see a prefix that disagrees with the hypothesis and the assertion in
        // `Scripted` on distributions would not catch it, so check prefixes directly.
        let next = |prefix: &[u32]| -> Vec<f32> {
            // Only consistent prefixes exist in this model: any token after "b" is "a".
            if prefix.len() >= 3 && prefix[1] == 4 {
                assert_eq!(prefix[2], 3, "state of a 'b' hypothesis got another row");
            }
            match prefix.len() {
                1 => vec![0.0, 0.0, 0.0, 0.5, 0.5],
                2 if prefix[1] == 4 => vec![0.0, 0.0, 0.0, 1.0, 0.0],
                2 => vec![0.0, 0.0, 0.0, 0.0, 1.0],
                _ => vec![0.0, 0.0, 1.0, 0.0, 0.0],
            }
        };
        let mut s = Scripted {
            next,
            vocab: 5,
            steps: 0,
        };
        let p = DecodeParams {
            strategy: Strategy::Beam,
            beam_size: 2,
            alternatives: 1,
            ..Default::default()
        };
        let out = decode(&mut s, SPECIAL, &p).unwrap();
        let mut seqs: Vec<Vec<u32>> = out.into_iter().map(|h| h.tokens).collect();
        seqs.sort();
        assert_eq!(seqs, [vec![3, 4], vec![4, 3]]);
    }
}
