//! An all-integer log-mel path for FPU-less targets: i16 PCM → Q30 window → radix-2 integer
//! FFT (Q30 twiddles) → u64 power → integer mel (Q16 weights) → integer natural log →
//! normalised output in Q16 (value × 65536).
//!
//! Tables are computed once at construction (with `libm`, i.e. soft float where there is no
//! FPU); per-frame work is integer only. Its error against the f32 [`crate::LogMel`] path is
//! measured by `tests/fixed_point.rs` and documented in the crate README.

use crate::config::{ConfigError, FrontendConfig, MAX_BINS, MAX_MELS, MAX_N_FFT};
use crate::framer::Framer;
use crate::mel::MelBank;
use crate::window::Window;

/// One in Q16.
pub const Q16_ONE: i32 = 1 << 16;

/// ln(2) in Q16.
const LN2_Q16: i64 = 45_426;

/// Integer streaming log-mel extractor; output values are Q16 (`value * 65536`).
pub struct LogMelQ16 {
    framer: Framer<i16>,
    stage: FixedStage,
}

struct FixedStage {
    n_fft: usize,
    log2_n: u32,
    n_mels: usize,
    magnitude: bool,
    window_q30: [i32; MAX_N_FFT],
    cos_q30: [i32; MAX_N_FFT / 2],
    sin_q30: [i32; MAX_N_FFT / 2],
    weights_q16: heapless::Vec<u32, { 2 * MAX_BINS }>,
    bank: MelBank,
    offset: u64,
    /// `log = "clamp"`: `offset` is a floor, not an addend.
    clamp: bool,
    log_unit_q16: i64,
    mean_q16: i64,
    inv_std_q16: i64,
    re: [i32; MAX_N_FFT],
    im: [i32; MAX_N_FFT],
    power: [u64; MAX_BINS],
    out: [i32; MAX_MELS],
}

/// `log2(x)` in Q16 for `x > 0`, by repeated squaring of the normalised mantissa
/// (one fractional bit per squaring).
fn log2_q16(x: u64) -> i64 {
    let n = 63 - x.leading_zeros();
    // Mantissa in [1, 2) as Q31.
    let mut m: u64 = if n >= 31 {
        x >> (n - 31)
    } else {
        x << (31 - n)
    };
    let mut frac = 0i64;
    for bit in (0..16).rev() {
        m = (m * m) >> 31;
        if m >= 1 << 32 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    ((n as i64) << 16) | frac
}

impl FixedStage {
    fn new(cfg: &FrontendConfig) -> Self {
        let n = cfg.n_fft;
        let window = Window::new(cfg);
        let mut window_q30 = [0i32; MAX_N_FFT];
        for (q, w) in window_q30.iter_mut().zip(window.taps()) {
            *q = libm::round(*w as f64 * (1u64 << 30) as f64) as i32;
        }
        let (mut cos_q30, mut sin_q30) = ([0i32; MAX_N_FFT / 2], [0i32; MAX_N_FFT / 2]);
        for k in 0..n / 2 {
            let phase = 2.0 * core::f64::consts::PI * k as f64 / n as f64;
            cos_q30[k] = libm::round(libm::cos(phase) * (1u64 << 30) as f64) as i32;
            sin_q30[k] = libm::round(-libm::sin(phase) * (1u64 << 30) as f64) as i32;
        }
        let bank = MelBank::new(cfg);
        let w_max = bank
            .weights()
            .iter()
            .cloned()
            .fold(f32::MIN_POSITIVE, f32::max) as f64;
        let mut weights_q16 = heapless::Vec::new();
        for w in bank.weights() {
            let _ = weights_q16.push(libm::round(*w as f64 / w_max * 65535.0) as u32);
        }
        // Windowed samples keep 30 − log2(n_fft) fractional bits: the unscaled FFT can grow
        // them by n_fft, which then just fits i32 (|X| ≤ n_fft · max|x| = 2^30), and by
        // Parseval a band's summed power stays below 2^60. Power doubles the exponent.
        // `unit` is the float mel value of one accumulator step.
        let amplitude_bits = 30 - n.trailing_zeros() as i32;
        let spectrum_bits = if cfg.power == 1.0 {
            amplitude_bits
        } else {
            2 * amplitude_bits
        };
        let unit = w_max * 65536.0 / 65535.0 / libm::exp2(spectrum_bits as f64);
        let offset = libm::round(cfg.log_offset as f64 / unit).max(1.0) as u64;
        Self {
            n_fft: n,
            log2_n: n.trailing_zeros(),
            n_mels: cfg.n_mels,
            magnitude: cfg.power == 1.0,
            window_q30,
            cos_q30,
            sin_q30,
            weights_q16,
            bank,
            offset,
            clamp: cfg.log == crate::config::LogKind::Clamp,
            log_unit_q16: libm::round(libm::log(unit) * 65536.0) as i64,
            mean_q16: libm::round(cfg.norm_mean as f64 * 65536.0) as i64,
            inv_std_q16: libm::round(65536.0 / cfg.norm_std as f64) as i64,
            re: [0; MAX_N_FFT],
            im: [0; MAX_N_FFT],
            power: [0; MAX_BINS],
            out: [0; MAX_MELS],
        }
    }

    /// In-place iterative radix-2 FFT, unscaled: inputs below 2^30 / n_fft keep every
    /// intermediate value below 2^30.
    fn fft(&mut self) {
        let n = self.n_fft;
        let shift = usize::BITS - self.log2_n;
        for i in 0..n {
            let j = i.reverse_bits() >> shift;
            if j > i {
                self.re.swap(i, j);
                self.im.swap(i, j);
            }
        }
        let mut half = 1;
        while half < n {
            let stride = n / (2 * half);
            for start in (0..n).step_by(2 * half) {
                for k in 0..half {
                    let (c, s) = (
                        self.cos_q30[k * stride] as i64,
                        self.sin_q30[k * stride] as i64,
                    );
                    let (a, b) = (start + k, start + k + half);
                    let (br, bi) = (self.re[b] as i64, self.im[b] as i64);
                    // Twiddle product in Q30, rounded back to the data's scale.
                    let tr = ((br * c - bi * s + (1 << 29)) >> 30) as i32;
                    let ti = ((br * s + bi * c + (1 << 29)) >> 30) as i32;
                    let (ar, ai) = (self.re[a], self.im[a]);
                    self.re[a] = ar + tr;
                    self.im[a] = ai + ti;
                    self.re[b] = ar - tr;
                    self.im[b] = ai - ti;
                }
            }
            half *= 2;
        }
    }

    fn frame(&mut self, samples: &[i16]) -> &[i32] {
        let n = self.n_fft;
        // Samples past a (TensorFlow-framed) frame shorter than the FFT are zero padding.
        self.re[samples.len()..n].fill(0);
        self.im[..n].fill(0);
        let taps = samples.iter().zip(&self.window_q30);
        let shift = 15 + self.log2_n;
        for (re, (&x, &w)) in self.re.iter_mut().zip(taps) {
            // Q15 × Q30 product rescaled to 30 − log2(n_fft) fractional bits (see `new`).
            *re = ((x as i64 * w as i64 + (1 << (shift - 1))) >> shift) as i32;
        }
        self.fft();
        for k in 0..=n / 2 {
            let (r, i) = (self.re[k] as i64, self.im[k] as i64);
            let p = (r * r + i * i) as u64;
            self.power[k] = if self.magnitude { p.isqrt() } else { p };
        }
        for (m, band) in self.bank.bands().iter().enumerate().take(self.n_mels) {
            let w = &self.weights_q16[band.offset as usize..][..band.len as usize];
            let p = &self.power[band.first_bin as usize..];
            // power < 2^61 and weight < 2^16: the product needs 77 bits before the shift.
            let acc: u64 = w
                .iter()
                .zip(p)
                .map(|(&w, &p)| ((p as u128 * w as u128) >> 16) as u64)
                .sum();
            let floored = if self.clamp {
                acc.max(self.offset)
            } else {
                acc + self.offset
            };
            let ln = (log2_q16(floored) * LN2_Q16) >> 16;
            let value = ln + self.log_unit_q16 - self.mean_q16;
            self.out[m] = ((value * self.inv_std_q16) >> 16) as i32;
        }
        &self.out[..self.n_mels]
    }
}

impl LogMelQ16 {
    /// Builds the extractor; fails with the offending parameter if the config is invalid.
    pub fn new(cfg: &FrontendConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            framer: Framer::new(cfg),
            stage: FixedStage::new(cfg),
        })
    }

    /// Pushes 16-bit PCM; calls `on_frame` with the `n_mels` Q16 values of each completed
    /// frame. Never allocates, never uses floating point.
    pub fn push(&mut self, samples: &[i16], mut on_frame: impl FnMut(&[i32])) {
        let Self { framer, stage } = self;
        framer.push(samples, |x| x, |frame| on_frame(stage.frame(frame)));
    }

    /// Ends the signal (centre padding as the f32 path) and resets for the next one.
    pub fn finish(&mut self, mut on_frame: impl FnMut(&[i32])) {
        let Self { framer, stage } = self;
        framer.finish(|frame| on_frame(stage.frame(frame)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_log2_is_within_one_q16_step_of_the_true_value() {
        for x in [
            1u64,
            2,
            3,
            10,
            1000,
            65_535,
            1 << 40,
            (1 << 53) + 12_345,
            u64::MAX >> 1,
        ] {
            let exact = libm::log2(x as f64) * 65536.0;
            let got = log2_q16(x) as f64;
            assert!((got - exact).abs() <= 1.0, "log2({x}): {got} vs {exact}");
        }
    }

    #[test]
    fn integer_fft_of_a_unit_impulse_is_flat() {
        let cfg = FrontendConfig {
            n_fft: 64,
            win_length: 64,
            ..Default::default()
        };
        let mut st = FixedStage::new(&cfg);
        st.re[..64].fill(0);
        st.im[..64].fill(0);
        st.re[0] = 1000;
        st.fft();
        assert!(st.re[..64].iter().all(|&v| v == 1000));
        assert!(st.im[..64].iter().all(|&v| v == 0));
    }
}
