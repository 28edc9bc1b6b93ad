//! Scoring given phrases under the caption model (teacher forcing): how hark asks "does this
//! window sound like `glass breaking`?" of the model itself, in words rather than label ids.

use super::contract::{SpecialTokens, Stepper};
use super::logits::log_softmax;

/// The length-normalised log-probability of each phrase (token ids) as the start of the
/// window's caption: every phrase is one row of a single decoder batch, fed its own tokens
/// after the start token, so N phrases cost as many steps as the longest one. Padding and
/// the start token are never generated, so they get no probability mass, as in decoding.
pub fn score_phrases<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    phrases: &[Vec<u32>],
) -> anyhow::Result<Vec<f32>> {
    // Triggers often share phrases: each distinct one is scored once.
    let mut distinct: Vec<Vec<u32>> = Vec::new();
    let index: Vec<usize> = phrases
        .iter()
        .map(|p| {
            distinct.iter().position(|d| d == p).unwrap_or_else(|| {
                distinct.push(p.clone());
                distinct.len() - 1
            })
        })
        .collect();
    let scores = score_distinct(stepper, special, &distinct)?;
    Ok(index.into_iter().map(|i| scores[i]).collect())
}

/// `score_phrases` of phrases that differ.
fn score_distinct<S: Stepper>(
    stepper: &mut S,
    special: SpecialTokens,
    phrases: &[Vec<u32>],
) -> anyhow::Result<Vec<f32>> {
    if phrases.is_empty() {
        return Ok(Vec::new());
    }
    let longest = phrases.iter().map(Vec::len).max().unwrap_or(0);
    let mut state = stepper.init(phrases.len())?;
    let mut logprob = vec![0.0f32; phrases.len()];
    let mut fed = vec![special.bos; phrases.len()];
    for t in 0..longest {
        let logits = stepper.step(&fed, &mut state)?;
        let v = stepper.vocab();
        for (i, phrase) in phrases.iter().enumerate() {
            // A finished phrase's row runs on (the batch steps together); its output is unused.
            let Some(&token) = phrase.get(t) else {
                fed[i] = special.pad;
                continue;
            };
            let mut row = logits[i * v..(i + 1) * v].to_vec();
            for banned in [special.pad, special.bos] {
                if let Some(l) = row.get_mut(banned as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            log_softmax(&mut row);
            logprob[i] += row
                .get(token as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY);
            fed[i] = token;
        }
    }
    Ok(logprob
        .iter()
        .zip(phrases)
        .map(|(l, p)| l / p.len().max(1) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SPECIAL, Scripted};
    use super::*;

    /// Vocabulary pad, bos, eos, "dog" (3), "barks" (4), "rain" (5): after bos a dog is
    /// likely (.6) and rain less (.2); after "dog", "barks" (.9).
    fn model(prefix: &[u32]) -> Vec<f32> {
        match prefix.last() {
            Some(1) => vec![0.05, 0.05, 0.05, 0.6, 0.05, 0.2],
            Some(3) => vec![0.0, 0.0, 0.05, 0.0, 0.9, 0.05],
            _ => vec![0.0, 0.0, 0.8, 0.1, 0.05, 0.05],
        }
    }

    #[test]
    fn phrases_score_their_mean_log_probability_in_one_batch() {
        let mut s = Scripted {
            next: model,
            vocab: 6,
            steps: 0,
        };
        let scores = score_phrases(&mut s, SPECIAL, &[vec![3, 4], vec![5]]).unwrap();
        // "dog barks": pad and bos banned after bos, so .6 / .9 of the rest; then .9.
        let dog = ((0.6f32 / 0.9).ln() + 0.9f32.ln()) / 2.0;
        let rain = (0.2f32 / 0.9).ln();
        assert!((scores[0] - dog).abs() < 1e-5, "{scores:?}");
        assert!((scores[1] - rain).abs() < 1e-5, "{scores:?}");
        assert!(scores[0] > scores[1]);
        // Two steps for the batch of two: the longest phrase decides.
        assert_eq!(s.steps, 4);
        assert!(score_phrases(&mut s, SPECIAL, &[]).unwrap().is_empty());
        // A phrase given twice is scored once, and both get its score.
        s.steps = 0;
        let twice = score_phrases(&mut s, SPECIAL, &[vec![5], vec![3, 4], vec![5]]).unwrap();
        assert_eq!(twice, vec![scores[1], scores[0], scores[1]]);
        assert_eq!(s.steps, 4);
    }
}
