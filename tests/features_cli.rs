//! `hark features` writes the same log-mel the library computes, for any WAV layout.

use dsp::FrontendConfig;
use hark_e2e::{hark, read_npy, synth_demo};

fn transpose(frames: &[f32], n_mels: usize) -> Vec<f32> {
    (0..n_mels)
        .flat_map(|m| frames.iter().skip(m).step_by(n_mels).copied())
        .collect()
}

#[test]
fn hark_version_prints_the_crate_version() {
    let out = hark(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hark {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn features_of_the_demo_clip_equal_the_library_output() {
    let dir = tempfile::tempdir().unwrap();
    let demo = synth_demo();
    let out = dir.path().join("demo.npy");
    let run = hark(&[
        "features",
        demo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let mut reader = hound::WavReader::open(&demo).unwrap();
    let x: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let cfg = FrontendConfig::default();
    let expected = dsp::features(&cfg, &x, 16_000).unwrap();
    let (shape, got) = read_npy(&out);
    assert_eq!(shape, [64, cfg.frames_for(x.len()) as u64]);
    assert_eq!(got, transpose(&expected, 64));
}

#[test]
fn a_stereo_44k_file_is_downmixed_and_resampled_to_the_frontend_rate() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("stereo.wav");
    let mut stereo = Vec::new();
    let mut mono = Vec::new();
    for i in 0..44_100 {
        let l = ((i as f32 * 0.05).sin() * 12_000.0) as i16;
        let r = ((i as f32 * 0.11).sin() * 8_000.0) as i16;
        stereo.extend([l, r]);
        mono.push((l as f32 / 32768.0 + r as f32 / 32768.0) / 2.0);
    }
    hark_e2e::write_pcm16(&wav, 44_100, 2, &stereo);
    let out = dir.path().join("stereo.npy");
    let run = hark(&[
        "features",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cfg = FrontendConfig::default();
    let (shape, got) = read_npy(&out);
    // 1 s at 44.1 kHz becomes 16 000 samples, so 101 frames.
    assert_eq!(shape, [64, 101]);
    assert_eq!(
        got,
        transpose(&dsp::features(&cfg, &mono, 44_100).unwrap(), 64)
    );
}

#[test]
fn a_file_that_is_not_wav_gets_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.wav");
    std::fs::write(&bad, b"this is not audio").unwrap();
    let run = hark(&["features", bad.to_str().unwrap(), "--out", "/dev/null"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("notes.wav: not an audio file hark can read"),
        "{err}"
    );
}

#[test]
fn an_invalid_frontend_config_names_the_key_and_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let fe = dir.path().join("fe.toml");
    std::fs::write(&fe, "n_mels = 0\n").unwrap();
    let demo = synth_demo();
    let run = hark(&[
        "features",
        demo.to_str().unwrap(),
        "--out",
        "/dev/null",
        "--frontend",
        fe.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("frontend.n_mels = 0 is invalid: 1..=256"),
        "{err}"
    );
}
