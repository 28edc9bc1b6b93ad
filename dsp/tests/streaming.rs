//! Streaming behaviour: chunking, input formats and edge cases.

mod common;
use common::*;
use dsp::{FrontendConfig, LogMel};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn streaming_output_equals_batch_output_for_any_chunking(
        chunks in prop::collection::vec(1usize..2000, 1..12),
        len in 0usize..12_000,
        center in any::<bool>(),
        preset in 0usize..3,
    ) {
        let cfg = match preset {
            0 => FrontendConfig::yamnet(),
            1 => FrontendConfig::ced(),
            _ => FrontendConfig { center, ..Default::default() },
        };
        let x = noise(len, 0.5, len as u64 + 7);
        prop_assert_eq!(streamed(&cfg, &x, &chunks), batch(&cfg, &x));
    }
}

#[test]
fn i16_and_f32_inputs_give_the_same_frames() {
    let cfg = FrontendConfig::default();
    let pcm: Vec<i16> = noise(16_000, 0.7, 3)
        .iter()
        .map(|x| (x * 32767.0) as i16)
        .collect();
    let as_f32: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut mel = LogMel::new(&cfg).unwrap();
    let mut from_i16 = Vec::new();
    for c in pcm.chunks(321) {
        mel.push_i16(c, |f| from_i16.extend_from_slice(f));
    }
    mel.finish(|f| from_i16.extend_from_slice(f));
    assert_eq!(from_i16, batch(&cfg, &as_f32));
}

#[test]
fn empty_input_yields_no_frames() {
    assert!(batch(&FrontendConfig::default(), &[]).is_empty());
}

#[test]
fn one_sample_yields_one_finite_frame() {
    let out = batch(&FrontendConfig::default(), &[0.5]);
    assert_eq!(out.len(), 64);
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn dc_energy_lands_in_the_lowest_band_only() {
    // A constant signal has all its energy in FFT bin 0, which only the first
    // Slaney filter (0 Hz..~70 Hz) covers when f_min = 0.
    let cfg = FrontendConfig::default();
    let out = batch(&cfg, &vec![0.5; 16_000]);
    let mid = &out[50 * 64..51 * 64];
    let silence = (cfg.log_offset).ln();
    assert!(mid[0] > silence + 10.0, "band 0 = {}", mid[0]);
    assert!(
        mid[10..].iter().all(|&v| v < silence + 1.0),
        "{:?}",
        &mid[10..]
    );
}

#[test]
fn full_scale_clipped_input_stays_finite_and_i16_extremes_agree_with_f32() {
    let cfg = FrontendConfig::default();
    let square: Vec<i16> = (0..16_000)
        .map(|i| {
            if (i / 20) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let mut mel = LogMel::new(&cfg).unwrap();
    let mut out = Vec::new();
    mel.push_i16(&square, |f| out.extend_from_slice(f));
    mel.finish(|f| out.extend_from_slice(f));
    assert!(out.iter().all(|v| v.is_finite()));
    let as_f32: Vec<f32> = square.iter().map(|&s| s as f32 / 32768.0).collect();
    assert_eq!(out, batch(&cfg, &as_f32));
}

#[test]
fn nan_and_infinite_samples_are_replaced_by_silence_and_counted() {
    let cfg = FrontendConfig::default();
    let mut x = noise(4_000, 0.5, 9);
    let mut clean = x.clone();
    for i in [10, 500, 3_999] {
        x[i] = f32::NAN;
        clean[i] = 0.0;
    }
    x[1_000] = f32::INFINITY;
    clean[1_000] = 0.0;
    x[2_000] = f32::NEG_INFINITY;
    clean[2_000] = 0.0;
    let mut mel = LogMel::new(&cfg).unwrap();
    let out = mel.process_signal(&x);
    assert_eq!(mel.sanitized_samples(), 5);
    assert!(out.iter().all(|v| v.is_finite()));
    assert_eq!(out, batch(&cfg, &clean));
}

#[test]
fn an_extractor_can_be_reused_after_finish() {
    let cfg = FrontendConfig::default();
    let x = noise(5_000, 0.5, 11);
    let mut mel = LogMel::new(&cfg).unwrap();
    let first = mel.process_signal(&x);
    assert_eq!(mel.process_signal(&x), first);
}

#[test]
fn the_clamp_log_floors_silence_and_passes_louder_bands_through() {
    // CED's front end: 10 log10(max(mel, 1e-10)), so digital silence is exactly -100 dB and a
    // band's value follows its power in dB.
    let cfg = FrontendConfig::ced();
    cfg.validate().unwrap();
    let silence = batch(&cfg, &[0.0; 1600]);
    assert!(
        silence.iter().all(|&v| (v + 100.0).abs() < 1e-3),
        "{:?}",
        &silence[..4]
    );
    let loud = batch(&cfg, &noise(1600, 0.5, 3));
    let quiet = batch(&cfg, &noise(1600, 0.05, 3));
    // A tenth of the amplitude is 20 dB less power in every band of every frame.
    for (a, b) in loud.iter().zip(&quiet) {
        assert!((a - b - 20.0).abs() < 1e-2, "{a} {b}");
    }
}
