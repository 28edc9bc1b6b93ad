//! Per-step logit processing shared by every strategy, applied in this order:
//! repetition penalty → bans (pad, bos, end before min_len, repeated n-grams, anything but
//! the end token at max_len) → log-softmax.

use super::contract::{DecodeParams, SpecialTokens};

/// Turns one row of logits into log-probabilities for the hypothesis `history` (its
/// generated tokens so far). Banned tokens get −∞.
pub fn process_row(
    row: &mut [f32],
    history: &[u32],
    params: &DecodeParams,
    special: SpecialTokens,
) {
    if params.repetition_penalty != 1.0 {
        let mut seen = std::collections::HashSet::new();
        for &t in history {
            if seen.insert(t) {
                let l = &mut row[t as usize];
                // CTRL (Keskar et al. 2019): shrink positive logits, push negative ones down.
                *l = if *l > 0.0 {
                    *l / params.repetition_penalty
                } else {
                    *l * params.repetition_penalty
                };
            }
        }
    }
    let ban = |row: &mut [f32], t: u32| {
        if let Some(l) = row.get_mut(t as usize) {
            *l = f32::NEG_INFINITY;
        }
    };
    ban(row, special.pad);
    ban(row, special.bos);
    if history.len() < params.min_len {
        ban(row, special.eos);
    }
    let n = params.no_repeat_ngram;
    if n > 0 && history.len() + 1 >= n {
        let prefix = &history[history.len() + 1 - n..];
        for window in history.windows(n) {
            if &window[..n - 1] == prefix {
                ban(row, window[n - 1]);
            }
        }
    }
    // Constraints that leave no token (every word used under an overflowing repetition
    // penalty, n-grams exhausted before min_len): the caption ends rather than dying.
    if row.iter().all(|&l| l == f32::NEG_INFINITY)
        && let Some(eos) = row.get_mut(special.eos as usize)
    {
        *eos = 0.0;
    }
    if history.len() + 1 >= params.max_len {
        let eos = row[special.eos as usize];
        row.fill(f32::NEG_INFINITY);
        row[special.eos as usize] = if eos.is_finite() { eos } else { 0.0 };
    }
    log_softmax(row);
}

/// In-place log-softmax; a row of only −∞ stays −∞.
pub fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let sum: f32 = row.iter().map(|&l| (l - max).exp()).sum();
    let log_z = max + sum.ln();
    for l in row.iter_mut() {
        *l -= log_z;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::SPECIAL;
    use super::*;

    fn params() -> DecodeParams {
        DecodeParams {
            min_len: 0,
            ..Default::default()
        }
    }

    #[test]
    fn log_softmax_of_equal_logits_is_uniform() {
        let mut row = [3.0f32; 4];
        log_softmax(&mut row);
        for l in row {
            assert!((l - 0.25f32.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn pad_and_bos_are_never_generated() {
        let mut row = [0.0f32; 5];
        process_row(&mut row, &[], &params(), SPECIAL);
        assert_eq!(row[0], f32::NEG_INFINITY);
        assert_eq!(row[1], f32::NEG_INFINITY);
        // The remaining three share the mass: ln(1/3).
        assert!((row[3] - (1.0f32 / 3.0).ln()).abs() < 1e-6);
    }

    #[test]
    fn end_token_is_banned_before_min_len_and_forced_at_max_len() {
        let p = DecodeParams {
            min_len: 2,
            max_len: 4,
            ..params()
        };
        let mut row = [0.0f32; 5];
        process_row(&mut row, &[3], &p, SPECIAL);
        assert_eq!(row[2], f32::NEG_INFINITY);
        let mut row = [0.0f32, 0.0, -5.0, 9.0, 9.0];
        process_row(&mut row, &[3, 4, 3], &p, SPECIAL);
        assert_eq!(row[2], 0.0, "the end token takes all the mass at max_len");
        assert_eq!(row[3], f32::NEG_INFINITY);
    }

    #[test]
    fn no_repeat_ngram_bans_the_token_that_would_repeat_a_bigram() {
        let p = DecodeParams {
            no_repeat_ngram: 2,
            ..params()
        };
        let mut row = [0.0f32; 6];
        // history "3 4 5 3": the bigram (3, 4) exists, so 4 is banned after 3.
        process_row(&mut row, &[3, 4, 5, 3], &p, SPECIAL);
        assert_eq!(row[4], f32::NEG_INFINITY);
        assert!(row[5].is_finite() && row[3].is_finite());
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let p = DecodeParams {
            repetition_penalty: 2.0,
            ..params()
        };
        // Tokens 3 (logit 2) and 4 (logit −1) were generated; 5 was not.
        let mut row = [0.0f32, 0.0, f32::NEG_INFINITY, 2.0, -1.0, 2.0];
        process_row(&mut row, &[3, 4, 3], &p, SPECIAL);
        // After the penalty: 3 → 1, 4 → −2, 5 stays 2; differences survive log-softmax.
        assert!((row[5] - row[3] - 1.0).abs() < 1e-6);
        assert!((row[3] - row[4] - 3.0).abs() < 1e-6);
    }
}
