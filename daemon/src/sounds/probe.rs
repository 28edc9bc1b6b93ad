//! The logistic probe a learned sound is: its examples against the bundle's negatives, on
//! embeddings centred on the bundle's train mean and scaled to unit length (block by block when
//! the embedding holds several encoder blocks' vectors side by side), the two classes
//! weighted equally, L2 on the weights (not the bias). Fitted by Newton's method, as
//! `hark_export.sounds.fit_probe` does: the loss is strictly convex, so both reach the one
//! optimum and the thresholds calibrated there hold here.

use crate::model::bundle::SoundReference;

const STEPS: usize = 50;

/// A fitted probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    weights: Vec<f64>,
    bias: f64,
}

/// `embedding` centred on `mean`, each of `parts` equal slices scaled to unit length, then the
/// whole (so each encoder block weighs the same whatever the scale of its values), as
/// `hark_export.sounds.centred` does.
pub fn centred(embedding: &[f32], mean: &[f32], parts: usize) -> Vec<f64> {
    let mut x: Vec<f64> = embedding
        .iter()
        .zip(mean)
        .map(|(e, m)| f64::from(*e) - f64::from(*m))
        .collect();
    let (whole, width) = ((parts as f64).sqrt(), (x.len() / parts.max(1)).max(1));
    for part in x.chunks_mut(width) {
        let norm = part.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12) * whole;
        part.iter_mut().for_each(|v| *v /= norm);
    }
    x
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Probe {
    /// Fits `examples` (raw embeddings) against the reference's negatives.
    pub fn fit(reference: &SoundReference, examples: &[Vec<f32>]) -> Self {
        let pos: Vec<Vec<f64>> = examples
            .iter()
            .map(|e| centred(e, &reference.mean, reference.parts))
            .collect();
        let neg: Vec<Vec<f64>> = reference
            .negatives
            .iter()
            .map(|n| n.iter().map(|v| f64::from(*v)).collect())
            .collect();
        let dim = reference.mean.len();
        let rows: Vec<(&[f64], f64, f64)> = pos
            .iter()
            .map(|x| (x.as_slice(), 1.0, 0.5 / pos.len() as f64))
            .chain(
                neg.iter()
                    .map(|x| (x.as_slice(), 0.0, 0.5 / neg.len() as f64)),
            )
            .collect();
        let n = dim + 1; // the bias last
        let mut theta = vec![0.0f64; n];
        let l2 = reference.probe_l2;
        for _ in 0..STEPS {
            let mut grad = vec![0.0f64; n];
            let mut hess = vec![0.0f64; n * n];
            for (i, g) in grad.iter_mut().enumerate().take(dim) {
                *g = l2 * theta[i];
            }
            for i in 0..n {
                hess[i * n + i] = if i < dim { l2 } else { 0.0 } + 1e-9;
            }
            for (x, y, w) in &rows {
                let z = x.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() + theta[dim];
                let p = sigmoid(z);
                let (g, h) = (w * (p - y), w * p * (1.0 - p));
                for i in 0..n {
                    let xi = if i < dim { x[i] } else { 1.0 };
                    grad[i] += g * xi;
                    for j in i..n {
                        let xj = if j < dim { x[j] } else { 1.0 };
                        hess[i * n + j] += h * xi * xj;
                    }
                }
            }
            for i in 0..n {
                for j in 0..i {
                    hess[i * n + j] = hess[j * n + i];
                }
            }
            let step = solve(hess, grad, n);
            let largest = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
            for (t, s) in theta.iter_mut().zip(&step) {
                *t -= s;
            }
            if largest < 1e-7 {
                break;
            }
        }
        let bias = theta.pop().unwrap_or(0.0);
        Self {
            weights: theta,
            bias,
        }
    }

    /// The probability (0..1) that a window of this embedding is the sound.
    pub fn score(&self, reference: &SoundReference, embedding: &[f32]) -> f32 {
        let x = centred(embedding, &reference.mean, reference.parts);
        let z = x.iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>() + self.bias;
        sigmoid(z) as f32
    }
}

/// Solves the symmetric positive-definite system `a x = b` (`a` row-major `n × n`) by
/// Cholesky; the regularised Hessian is always positive definite.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-300).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-d reference: mean 0, negatives spread around the x axis's opposite.
    fn reference() -> SoundReference {
        let negatives = [
            [-1.0, 0.2, 0.0],
            [-0.8, -0.3, 0.5],
            [0.0, 1.0, 0.0],
            [0.1, -1.0, 0.2],
        ]
        .iter()
        .map(|v| centred(v, &[0.0; 3], 1).iter().map(|x| *x as f32).collect())
        .collect();
        SoundReference {
            mean: vec![0.0; 3],
            parts: 1,
            negatives,
            probe_l2: 0.01,
            thresholds: vec![(1, 0.7)],
        }
    }

    #[test]
    fn each_block_of_the_embedding_weighs_the_same() {
        // Two blocks: the second's values 100 times larger do not drown the first.
        let x = centred(&[3.0, 4.0, 600.0, 800.0], &[0.0; 4], 2);
        let want = [0.6, 0.8, 0.6, 0.8].map(|v| v / 2f64.sqrt());
        assert!(
            x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{x:?}"
        );
        let one = centred(&[3.0, 4.0, 600.0, 800.0], &[1.0, 0.0, 0.0, 0.0], 1);
        assert!((one.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0]
        let x = solve(vec![4.0, 2.0, 2.0, 3.0], vec![2.0, 1.0], 2);
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
    }

    #[test]
    fn the_probe_scores_its_examples_kind_high_and_the_negatives_low() {
        let r = reference();
        let probe = Probe::fit(&r, &[vec![1.0, 0.1, 0.0], vec![0.9, -0.1, 0.1]]);
        assert!(probe.score(&r, &[1.0, 0.0, 0.05]) > 0.9);
        assert!(probe.score(&r, &[-1.0, 0.1, 0.0]) < 0.1);
        // Scale does not matter: embeddings are compared at unit length.
        let a = probe.score(&r, &[2.0, 0.2, 0.0]);
        let b = probe.score(&r, &[1.0, 0.1, 0.0]);
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn the_fit_reaches_the_loss_minimum() {
        // At the optimum the regularised loss's gradient is zero: nudging any weight raises it.
        let r = reference();
        let examples = vec![vec![1.0, 0.1, 0.0]];
        let probe = Probe::fit(&r, &examples);
        let loss = |p: &Probe| {
            let mut l = 0.0;
            let term = |x: &[f32], y: f64, w: f64| {
                let s = f64::from(p.score(&r, x)).clamp(1e-12, 1.0 - 1e-12);
                -w * (y * s.ln() + (1.0 - y) * (1.0 - s).ln())
            };
            l += term(&examples[0], 1.0, 0.5);
            for n in &r.negatives {
                l += term(n, 0.0, 0.5 / r.negatives.len() as f64);
            }
            l + 0.005 * p.weights.iter().map(|w| w * w).sum::<f64>()
        };
        let best = loss(&probe);
        for i in 0..3 {
            let mut q = probe.clone();
            q.weights[i] += 1e-2;
            assert!(loss(&q) > best, "weight {i}");
        }
    }
}
