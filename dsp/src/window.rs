//! Analysis windows, precomputed once and zero-padded to the FFT size.

use crate::config::{Framing, FrontendConfig, MAX_N_FFT, WindowKind};

/// A window table of length `n_fft`: the `win_length` taps centred (librosa framing) or
/// first (TensorFlow framing, whose frames are zero-padded at the end), zeros elsewhere.
#[derive(Clone)]
pub struct Window {
    taps: heapless::Vec<f32, MAX_N_FFT>,
}

impl Window {
    /// Builds the window for a validated config, as librosa's `get_window` + `pad_center`,
    /// or `tf.signal.hann_window` / `hamming_window` (periodic) followed by zeros.
    pub fn new(cfg: &FrontendConfig) -> Self {
        let n = cfg.win_length;
        let left = match cfg.framing {
            Framing::Librosa => (cfg.n_fft - n) / 2,
            Framing::Tensorflow => 0,
        };
        let mut taps = heapless::Vec::new();
        for i in 0..cfg.n_fft {
            let w = if i < left || i >= left + n {
                0.0
            } else {
                // Periodic (DFT-even) windows, as scipy's `fftbins=True`.
                let phase = 2.0 * core::f64::consts::PI * (i - left) as f64 / n as f64;
                match cfg.window {
                    WindowKind::Hann => 0.5 - 0.5 * libm::cos(phase),
                    WindowKind::Hamming => 0.54 - 0.46 * libm::cos(phase),
                    WindowKind::Rectangular => 1.0,
                }
            };
            // Capacity is MAX_N_FFT and a validated n_fft never exceeds it.
            let _ = taps.push(w as f32);
        }
        Self { taps }
    }

    /// The `n_fft` window values.
    pub fn taps(&self) -> &[f32] {
        &self.taps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_hann_matches_scipy() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 8,
            ..Default::default()
        };
        let w = Window::new(&cfg);
        // scipy.signal.get_window("hann", 8) = [0, .1464, .5, .8536, 1, .8536, .5, .1464], padded by 4 each side
        let expected = [
            0.0,
            0.146_446_6,
            0.5,
            0.853_553_4,
            1.0,
            0.853_553_4,
            0.5,
            0.146_446_6,
        ];
        assert_eq!(&w.taps()[..4], &[0.0; 4]);
        for (a, b) in w.taps()[4..12].iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(&w.taps()[12..], &[0.0; 4]);
    }

    #[test]
    fn tensorflow_framing_puts_the_taps_first() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 8,
            center: false,
            framing: Framing::Tensorflow,
            ..Default::default()
        };
        let w = Window::new(&cfg);
        // tf.signal.hann_window(8) = [0, .1464, .5, .8536, 1, .8536, .5, .1464]
        assert!((w.taps()[4] - 1.0).abs() < 1e-7);
        assert!((w.taps()[1] - 0.146_446_6).abs() < 1e-6);
        assert_eq!(&w.taps()[8..], &[0.0; 8]);
    }
}
