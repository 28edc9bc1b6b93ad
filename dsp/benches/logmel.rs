//! Throughput of the front end on 10 s of 16 kHz audio pushed in 10 ms chunks, as the
//! daemon does. `cargo bench -p hark-dsp`; docs/PERFORMANCE.md has the figures.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dsp::fixed::LogMelQ16;
use dsp::{FrontendConfig, LogMel, Resampler};
use std::hint::black_box;

fn signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.071).sin() + (i as f32 * 0.0031).sin()) * 0.4)
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = FrontendConfig::default();
    let x = signal(160_000);
    let pcm: Vec<i16> = x.iter().map(|v| (v * 32767.0) as i16).collect();
    let mut g = c.benchmark_group("10s_16kHz");
    g.throughput(Throughput::Elements(x.len() as u64));

    let mut mel = LogMel::new(&cfg).unwrap();
    g.bench_function("logmel_f32", |b| {
        b.iter(|| {
            let mut acc = 0.0f32;
            for chunk in x.chunks(160) {
                mel.push_f32(chunk, |f| acc += f[0]);
            }
            mel.finish(|f| acc += f[0]);
            black_box(acc)
        })
    });
    g.bench_function("logmel_i16", |b| {
        b.iter(|| {
            let mut acc = 0.0f32;
            for chunk in pcm.chunks(160) {
                mel.push_i16(chunk, |f| acc += f[0]);
            }
            mel.finish(|f| acc += f[0]);
            black_box(acc)
        })
    });
    let mut fixed = LogMelQ16::new(&cfg).unwrap();
    g.bench_function("logmel_fixed_q16", |b| {
        b.iter(|| {
            let mut acc = 0i64;
            for chunk in pcm.chunks(160) {
                fixed.push(chunk, |f| acc += f[0] as i64);
            }
            fixed.finish(|f| acc += f[0] as i64);
            black_box(acc)
        })
    });
    g.finish();

    let x48 = signal(480_000);
    let mut g = c.benchmark_group("10s_48kHz");
    g.throughput(Throughput::Elements(x48.len() as u64));
    let mut rs = Resampler::new(48_000, 16_000).unwrap();
    g.bench_function("resample_to_16k_then_logmel", |b| {
        b.iter(|| {
            let mut acc = 0.0f32;
            for chunk in x48.chunks(480) {
                rs.push(chunk, |out| mel.push_f32(out, |f| acc += f[0]));
            }
            rs.finish(|out| mel.push_f32(out, |f| acc += f[0]));
            mel.finish(|f| acc += f[0]);
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
