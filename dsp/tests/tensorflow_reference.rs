//! The f32 path with `FrontendConfig::yamnet()` against YAMNet's own features
//! (`tf.signal.stft` magnitude, `tf.signal.linear_to_mel_weight_matrix`, `log(mel + 0.001)`),
//! computed in float32 by TensorFlow 2.21.0 through `dsp/scripts/make_tf_reference.py`.
//! The signals are regenerated here from the script's formulas; only TF's outputs are stored.

mod common;
use common::*;
use dsp::FrontendConfig;

/// Stated tolerances on log-mel values (natural log units). Both sides compute in float32,
/// whose FFT round-off (~1e-6 of the peak) dominates bands that hold almost no energy
/// (mel ≪ log_offset): there TF's own float32 result is up to 5e-3 from its float64 one.
/// Measured: max 6.5e-3 (chirp), 1.9e-3 (sine), 1.2e-5 (noise), 0 (silence).
const MAX_ERROR: f32 = 1e-2;
/// Mean absolute error over all frames and bands. Measured: at most 4.1e-4 (chirp).
const MEAN_ERROR: f32 = 1e-3;

const RATE: usize = 16_000;
const N: usize = RATE / 2;

/// The script's signals, sample for sample.
fn signal(name: &str) -> Vec<f32> {
    let tone = |phase: &dyn Fn(f64) -> f64| -> Vec<f32> {
        (0..N)
            .map(|i| phase(i as f64 / RATE as f64) as f32)
            .collect()
    };
    let duration = N as f64 / RATE as f64;
    let tau = 2.0 * std::f64::consts::PI;
    match name {
        "sine" => tone(&|t| 0.5 * (tau * 440.0 * t).sin()),
        "chirp" => {
            tone(&|t| 0.8 * (tau * (100.0 * t + (7200.0 - 100.0) * t * t / (2.0 * duration))).sin())
        }
        "noise" => noise(N, 0.3, 1234),
        "silence" => vec![0.0; N],
        _ => unreachable!(),
    }
}

/// (max, mean) absolute error of our frames (frame-major) against TF's [n_mels, frames].
fn error(name: &str, got: &[f32]) -> (f32, f32) {
    let cfg = FrontendConfig::yamnet();
    let (shape, expected) = read_npy(&format!("yamnet.{name}.logmel.npy"));
    let (n_mels, frames) = (shape[0] as usize, shape[1] as usize);
    assert_eq!(n_mels, cfg.n_mels);
    assert_eq!(frames, cfg.frames_for(N), "frame count");
    let transposed: Vec<f32> = (0..frames * n_mels)
        .map(|i| got[(i % frames) * n_mels + i / frames])
        .collect();
    let mean = transposed
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / expected.len() as f32;
    (max_abs_diff(&transposed, &expected), mean)
}

#[test]
fn the_reference_config_is_the_yamnet_constant() {
    assert_eq!(reference_config("yamnet"), FrontendConfig::yamnet());
}

#[test]
fn every_signal_matches_tensorflow_with_the_yamnet_front_end() {
    let cfg = FrontendConfig::yamnet();
    for name in ["sine", "chirp", "noise", "silence"] {
        let x = signal(name);
        let (max, mean) = error(name, &batch(&cfg, &x));
        eprintln!("{name}: max abs error {max:.2e}, mean {mean:.2e}");
        assert!(
            max <= MAX_ERROR,
            "{name}: max abs error {max} > {MAX_ERROR}"
        );
        assert!(
            mean <= MEAN_ERROR,
            "{name}: mean abs error {mean} > {MEAN_ERROR}"
        );
        // Streaming in odd chunks gives the same frames.
        assert_eq!(streamed(&cfg, &x, &[1, 159, 401, 37]), batch(&cfg, &x));
    }
}
