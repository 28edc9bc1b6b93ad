//! Error of the all-integer path against the f32 path, over signals from loud to quiet.
//! The bounds asserted here are the ones documented in the crate README.

mod common;
use common::*;
use dsp::FrontendConfig;
use dsp::fixed::LogMelQ16;

fn fixed(cfg: &FrontendConfig, pcm: &[i16]) -> Vec<f32> {
    let mut m = LogMelQ16::new(cfg).unwrap();
    let mut out = Vec::new();
    m.push(pcm, |f| out.extend(f.iter().map(|&q| q as f32 / 65536.0)));
    m.finish(|f| out.extend(f.iter().map(|&q| q as f32 / 65536.0)));
    out
}

/// (max abs error, mean abs error) of the fixed path against the f32 path on `x`.
fn error(cfg: &FrontendConfig, x: &[f32]) -> (f32, f32) {
    let pcm: Vec<i16> = x.iter().map(|&v| (v * 32767.0).round() as i16).collect();
    let as_f32: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let a = fixed(cfg, &pcm);
    let b = batch(cfg, &as_f32);
    let mean = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    (max_abs_diff(&a, &b), mean)
}

fn sine(n: usize, hz: f32, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin())
        .collect()
}

#[test]
fn fixed_point_path_tracks_the_f32_path_from_full_scale_to_minus_60_dbfs() {
    for cfg in [FrontendConfig::default(), FrontendConfig::yamnet()] {
        tracks_the_f32_path(&cfg);
    }
}

fn tracks_the_f32_path(cfg: &FrontendConfig) {
    for (name, x) in [
        ("sine 0 dBFS", sine(16_000, 440.0, 0.99)),
        ("sine -20 dBFS", sine(16_000, 1500.0, 0.1)),
        ("noise -10 dBFS", noise(16_000, 0.3, 5)),
        ("noise -60 dBFS", noise(16_000, 0.001, 6)),
        ("silence", vec![0.0; 16_000]),
    ] {
        let (max, mean) = error(cfg, &x);
        eprintln!(
            "{name} ({:?} framing): max {max:.4}, mean {mean:.5}",
            cfg.framing
        );
        assert!(mean < 0.005, "{name}: mean abs error {mean}");
        assert!(max < 0.05, "{name}: max abs error {max}");
    }
}

#[test]
fn fixed_point_path_streams_like_it_batches() {
    let pcm: Vec<i16> = noise(9_000, 0.4, 8)
        .iter()
        .map(|&v| (v * 32767.0) as i16)
        .collect();
    for cfg in [FrontendConfig::default(), FrontendConfig::yamnet()] {
        let whole = fixed(&cfg, &pcm);
        assert_eq!(whole.len(), cfg.frames_for(pcm.len()) * cfg.n_mels);
        let mut m = LogMelQ16::new(&cfg).unwrap();
        let mut out = Vec::new();
        for c in pcm.chunks(77) {
            m.push(c, |f| out.extend(f.iter().map(|&q| q as f32 / 65536.0)));
        }
        m.finish(|f| out.extend(f.iter().map(|&q| q as f32 / 65536.0)));
        assert_eq!(out, whole);
    }
}
