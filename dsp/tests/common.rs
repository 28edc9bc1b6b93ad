//! Shared by the dsp integration tests: reference files and whole-signal helpers.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use dsp::{FrontendConfig, LogMel};

/// `dsp/tests/reference/`, written by `dsp/scripts/make_reference.py` (librosa 0.11).
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// Reads a float32 .npy file: its shape and values.
pub fn read_npy(name: &str) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(reference_dir().join(name)).expect("reference file");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().expect("f32 data"))
}

/// A reference configuration (`default` or `alt`).
pub fn reference_config(name: &str) -> FrontendConfig {
    let text =
        std::fs::read_to_string(reference_dir().join(format!("{name}.config.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Whole-signal log-mel, frame-major.
pub fn batch(cfg: &FrontendConfig, x: &[f32]) -> Vec<f32> {
    LogMel::new(cfg).unwrap().process_signal(x)
}

/// Log-mel of `x` pushed in the given chunk sizes (cycled), frame-major.
pub fn streamed(cfg: &FrontendConfig, x: &[f32], chunks: &[usize]) -> Vec<f32> {
    let mut mel = LogMel::new(cfg).unwrap();
    let mut out = Vec::new();
    let mut rest = x;
    for &c in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(c.min(rest.len()));
        mel.push_f32(head, |f| out.extend_from_slice(f));
        rest = tail;
    }
    mel.finish(|f| out.extend_from_slice(f));
    out
}

/// Deterministic test noise in [-amp, amp] (xorshift), so tests need no RNG crate.
pub fn noise(n: usize, amp: f32, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * amp
        })
        .collect()
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
