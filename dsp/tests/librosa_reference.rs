//! The f32 path against librosa 0.11 `feature.melspectrogram` + the same log, computed in
//! float64 by `dsp/scripts/make_reference.py` on the very samples stored beside it.

mod common;
use common::*;

/// Stated tolerance on log-mel values (natural log units).
const TOLERANCE: f32 = 1e-3;

fn check(config: &str, signal: &str) {
    let cfg = reference_config(config);
    let (_, x) = read_npy(&format!("{config}.{signal}.input.npy"));
    let (shape, expected) = read_npy(&format!("{config}.{signal}.logmel.npy"));
    // librosa's layout is [n_mels, frames]; ours is frame-major.
    let (n_mels, frames) = (shape[0] as usize, shape[1] as usize);
    assert_eq!(n_mels, cfg.n_mels);
    assert_eq!(frames, cfg.frames_for(x.len()), "frame count");
    let got = batch(&cfg, &x);
    let transposed: Vec<f32> = (0..frames * n_mels)
        .map(|i| got[(i % frames) * n_mels + i / frames])
        .collect();
    let err = max_abs_diff(&transposed, &expected);
    assert!(
        err <= TOLERANCE,
        "{config}/{signal}: max abs error {err} > {TOLERANCE}"
    );
}

#[test]
fn sine_matches_librosa_with_default_parameters() {
    check("default", "sine");
}

#[test]
fn chirp_matches_librosa_with_default_parameters() {
    check("default", "chirp");
}

#[test]
fn noise_matches_librosa_with_default_parameters() {
    check("default", "noise");
}

#[test]
fn silence_matches_librosa_with_default_parameters() {
    check("default", "silence");
}

#[test]
fn every_signal_matches_librosa_with_htk_hamming_magnitude_uncentred_parameters() {
    for s in ["sine", "chirp", "noise", "silence"] {
        check("alt", s);
    }
}
