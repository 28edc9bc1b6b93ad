//! Streaming sample-rate conversion to the front end's rate (rubato's FFT resampler).
//!
//! Output is aligned with the input: the resampler's own delay is dropped, and a finished
//! signal of `n` input samples yields exactly `ceil(n * rate_out / rate_in)` output samples,
//! so the daemon (pushing live chunks) and the trainer (pushing whole clips) agree.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _};

/// Input samples per resampler call: a trade-off between latency (64 ms at 16 kHz) and
/// per-call overhead.
const CHUNK: usize = 1024;

/// The resampler could not be built for these rates.
#[derive(Debug, thiserror::Error)]
#[error("cannot resample {rate_in} Hz to {rate_out} Hz: {reason}")]
pub struct ResampleError {
    rate_in: u32,
    rate_out: u32,
    reason: String,
}

/// Mono streaming resampler; a pass-through when both rates are equal.
pub struct Resampler {
    fft: Option<Fft<f32>>,
    rate_in: u32,
    rate_out: u32,
    input: Vec<f32>,
    filled: usize,
    output: Vec<f32>,
    delay_left: usize,
    consumed: u64,
    produced: u64,
}

impl Resampler {
    /// A resampler from `rate_in` to `rate_out` Hz. Allocates all its buffers here.
    pub fn new(rate_in: u32, rate_out: u32) -> Result<Self, ResampleError> {
        let err = |reason: String| ResampleError {
            rate_in,
            rate_out,
            reason,
        };
        if rate_in == 0 || rate_out == 0 {
            return Err(err("sample rates must be positive".into()));
        }
        let fft = if rate_in == rate_out {
            None
        } else {
            let fft = Fft::<f32>::new(
                rate_in as usize,
                rate_out as usize,
                CHUNK,
                1,
                FixedSync::Input,
            )
            .map_err(|e| err(e.to_string()))?;
            Some(fft)
        };
        let (in_len, out_len) = fft
            .as_ref()
            .map_or((0, 0), |f| (f.input_frames_max(), f.output_frames_max()));
        let mut r = Self {
            fft,
            rate_in,
            rate_out,
            input: vec![0.0; in_len],
            filled: 0,
            output: vec![0.0; out_len],
            delay_left: 0,
            consumed: 0,
            produced: 0,
        };
        r.reset();
        Ok(r)
    }

    /// Input rate in Hz.
    pub fn rate_in(&self) -> u32 {
        self.rate_in
    }

    /// Output rate in Hz.
    pub fn rate_out(&self) -> u32 {
        self.rate_out
    }

    /// Forgets buffered input; the next sample starts a new signal.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.consumed = 0;
        self.produced = 0;
        if let Some(fft) = self.fft.as_mut() {
            fft.reset();
            self.delay_left = fft.output_delay();
        }
    }

    /// Pushes input samples; calls `on_output` with each run of resampled samples.
    /// Never allocates.
    pub fn push(&mut self, samples: &[f32], mut on_output: impl FnMut(&[f32])) {
        self.consumed += samples.len() as u64;
        if self.fft.is_none() {
            self.produced += samples.len() as u64;
            on_output(samples);
            return;
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let need = self.input.len() - self.filled;
            let take = need.min(rest.len());
            self.input[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
            if self.filled == self.input.len() {
                self.run(None, &mut on_output);
            }
        }
    }

    /// Ends the signal: flushes buffered input so the total output is exactly
    /// `ceil(consumed * rate_out / rate_in)` samples, then resets.
    pub fn finish(&mut self, mut on_output: impl FnMut(&[f32])) {
        if self.fft.is_some() {
            let expected = (self.consumed * self.rate_out as u64).div_ceil(self.rate_in as u64);
            let mut partial = Some(self.filled);
            while self.produced < expected {
                let limit = (expected - self.produced) as usize;
                let partial = partial.take().or(Some(0));
                if self.run_limited(partial, limit, &mut on_output) == 0 {
                    break;
                }
            }
        }
        self.reset();
    }

    fn run(&mut self, partial: Option<usize>, on_output: &mut impl FnMut(&[f32])) {
        self.run_limited(partial, usize::MAX, on_output);
    }

    /// One resampler call on the buffered chunk (`partial`: only that many samples are
    /// real, the rest silence); emits at most `limit` samples after dropping the delay.
    /// Returns how many samples the resampler wrote (0 only if it failed).
    fn run_limited(
        &mut self,
        partial: Option<usize>,
        limit: usize,
        on_output: &mut impl FnMut(&[f32]),
    ) -> usize {
        let Some(fft) = self.fft.as_mut() else {
            return 0;
        };
        let n_in = self.input.len();
        let n_out = self.output.len();
        // Buffer lengths come from the resampler itself, so these adapters and the call
        // cannot fail; a failure would be a rubato contract change, surfaced as no output.
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.input[..], 1, n_in),
            InterleavedSlice::new_mut(&mut self.output[..], 1, n_out),
        ) else {
            return 0;
        };
        let indexing = Indexing {
            partial_len: partial,
            ..Indexing::new()
        };
        let Ok((_, written)) = fft.process_into_buffer(&input, &mut output, Some(&indexing)) else {
            return 0;
        };
        self.filled = 0;
        let skip = self.delay_left.min(written);
        self.delay_left -= skip;
        let emit = (written - skip).min(limit);
        if emit > 0 {
            self.produced += emit as u64;
            on_output(&self.output[skip..skip + emit]);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resample_all(r: &mut Resampler, x: &[f32], chunk: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for c in x.chunks(chunk) {
            r.push(c, |o| out.extend_from_slice(o));
        }
        r.finish(|o| out.extend_from_slice(o));
        out
    }

    #[test]
    fn output_length_is_the_rate_ratio_of_the_input_length() {
        let mut r = Resampler::new(44_100, 16_000).unwrap();
        let x = vec![0.1f32; 44_100 * 2 + 17];
        let out = resample_all(&mut r, &x, 333);
        assert_eq!(
            out.len() as u64,
            ((44_100 * 2 + 17) as u64 * 16_000).div_ceil(44_100)
        );
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_phase_after_resampling() {
        // 440 Hz at 48 kHz → 16 kHz: sample n of the output must be sin(2π·440·n/16000).
        let mut r = Resampler::new(48_000, 16_000).unwrap();
        let tau = 2.0 * std::f32::consts::PI;
        let x: Vec<f32> = (0..48_000)
            .map(|n| (tau * 440.0 * n as f32 / 48_000.0).sin())
            .collect();
        let out = resample_all(&mut r, &x, 480);
        for (n, y) in out.iter().enumerate().skip(500).take(15_000) {
            let expected = (tau * 440.0 * n as f32 / 16_000.0).sin();
            assert!((y - expected).abs() < 1e-3, "sample {n}: {y} vs {expected}");
        }
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let x: Vec<f32> = (0..20_000)
            .map(|n| ((n * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let a = resample_all(&mut Resampler::new(22_050, 16_000).unwrap(), &x, 20_000);
        let b = resample_all(&mut Resampler::new(22_050, 16_000).unwrap(), &x, 37);
        assert_eq!(a, b);
    }

    #[test]
    fn equal_rates_pass_samples_through() {
        let mut r = Resampler::new(16_000, 16_000).unwrap();
        let x = [0.5f32, -0.25, 0.125];
        assert_eq!(resample_all(&mut r, &x, 2), x);
    }
}
