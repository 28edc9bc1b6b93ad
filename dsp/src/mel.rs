//! The triangular mel filter bank, stored sparsely: each filter is a contiguous run of bins.

use crate::config::{FrontendConfig, MAX_BINS, MAX_MELS, MelNorm, MelScale, MelWeights};

/// One filter: its weights occupy `weights[offset..offset + len]` and apply to bins
/// `first_bin..first_bin + len`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Band {
    /// First FFT bin with a non-zero weight.
    pub first_bin: u16,
    /// Number of consecutive non-zero weights.
    pub len: u16,
    /// Start of this band's weights in [`MelBank::weights`].
    pub offset: u32,
}

/// Precomputed filter bank. A bin lies inside at most two adjacent triangles, so all
/// non-zero weights fit in `2 * MAX_BINS`.
#[derive(Clone)]
pub struct MelBank {
    bands: heapless::Vec<Band, MAX_MELS>,
    weights: heapless::Vec<f32, { 2 * MAX_BINS }>,
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * libm::log10(1.0 + hz / 700.0),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let logstep = libm::log(6.4) / 27.0;
            if hz >= min_log_hz {
                min_log_hz / f_sp + libm::log(hz / min_log_hz) / logstep
            } else {
                hz / f_sp
            }
        }
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (libm::pow(10.0, mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let min_log_mel = min_log_hz / f_sp;
            let logstep = libm::log(6.4) / 27.0;
            if mel >= min_log_mel {
                min_log_hz * libm::exp(logstep * (mel - min_log_mel))
            } else {
                f_sp * mel
            }
        }
    }
}

impl MelBank {
    /// Builds the bank for a validated config exactly as `librosa.filters.mel` or
    /// `tf.signal.linear_to_mel_weight_matrix` does (per `mel_weights`; computed in f64,
    /// stored in f32).
    pub fn new(cfg: &FrontendConfig) -> Self {
        let n_bins = cfg.n_bins();
        let sr = cfg.sample_rate as f64;
        let lo = hz_to_mel(cfg.f_min as f64, cfg.mel_scale);
        let hi = hz_to_mel(cfg.f_max as f64, cfg.mel_scale);
        // n_mels + 2 edges, evenly spaced on the mel scale.
        let mut edges_mel = [0.0f64; MAX_MELS + 2];
        for (i, e) in edges_mel.iter_mut().take(cfg.n_mels + 2).enumerate() {
            *e = lo + (hi - lo) * i as f64 / (cfg.n_mels + 1) as f64;
        }
        let mut bands = heapless::Vec::new();
        let mut weights = heapless::Vec::new();
        for m in 0..cfg.n_mels {
            let mels = (edges_mel[m], edges_mel[m + 1], edges_mel[m + 2]);
            let hz = (
                mel_to_hz(mels.0, cfg.mel_scale),
                mel_to_hz(mels.1, cfg.mel_scale),
                mel_to_hz(mels.2, cfg.mel_scale),
            );
            let scale = match cfg.mel_norm {
                MelNorm::Slaney => 2.0 / (hz.2 - hz.0),
                MelNorm::None => 1.0,
            };
            // librosa's triangles are linear in Hz; TensorFlow's are linear in mel and skip DC.
            let ((left, centre, right), first) = match cfg.mel_weights {
                MelWeights::Librosa => (hz, 0),
                MelWeights::Tensorflow => (mels, 1),
            };
            let offset = weights.len() as u32;
            let mut first_bin = None;
            for k in first..n_bins {
                let f = k as f64 * sr / cfg.n_fft as f64;
                let x = match cfg.mel_weights {
                    MelWeights::Librosa => f,
                    MelWeights::Tensorflow => hz_to_mel(f, cfg.mel_scale),
                };
                let w = ((x - left) / (centre - left))
                    .min((right - x) / (right - centre))
                    .max(0.0);
                if w > 0.0 {
                    first_bin.get_or_insert(k);
                    // Capacity 2 * MAX_BINS cannot be exceeded (see the type's doc).
                    let _ = weights.push((w * scale) as f32);
                }
            }
            let len = weights.len() as u32 - offset;
            let band = Band {
                first_bin: first_bin.unwrap_or(0) as u16,
                len: len as u16,
                offset,
            };
            let _ = bands.push(band);
        }
        Self { bands, weights }
    }

    /// The filters, one per mel band.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// All non-zero weights, indexed through [`Band::offset`].
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Applies the bank to a spectrum of `n_bins` values, writing one value per band.
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        for (band, o) in self.bands.iter().zip(out.iter_mut()) {
            let start = band.first_bin as usize;
            let w = &self.weights[band.offset as usize..][..band.len as usize];
            *o = w.iter().zip(&spectrum[start..]).map(|(w, s)| w * s).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_is_linear_below_1khz_and_round_trips() {
        assert!((hz_to_mel(500.0, MelScale::Slaney) - 7.5).abs() < 1e-12);
        for hz in [0.0, 440.0, 1000.0, 3000.0, 8000.0] {
            for s in [MelScale::Slaney, MelScale::Htk] {
                assert!((mel_to_hz(hz_to_mel(hz, s), s) - hz).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn every_band_has_weights_at_default_resolution() {
        let bank = MelBank::new(&FrontendConfig::default());
        assert_eq!(bank.bands().len(), 64);
        assert!(bank.bands().iter().all(|b| b.len > 0));
    }

    #[test]
    fn tensorflow_weights_match_linear_to_mel_weight_matrix() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 16,
            n_mels: 4,
            f_min: 125.0,
            f_max: 7500.0,
            mel_scale: MelScale::Htk,
            mel_norm: MelNorm::None,
            mel_weights: MelWeights::Tensorflow,
            ..Default::default()
        };
        // tf.signal.linear_to_mel_weight_matrix(4, 9, 16000, 125.0, 7500.0, tf.float64).numpy().T
        let expected: [[f64; 9]; 4] = [
            [0.0, 0.4258693, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.5741307, 0.4186359, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.5813641, 0.732635, 0.2117792, 0.0, 0.0, 0.0, 0.0],
            [
                0.0, 0.0, 0.0, 0.267365, 0.7882208, 0.7917854, 0.4398565, 0.1369773, 0.0,
            ],
        ];
        let bank = MelBank::new(&cfg);
        for (band, row) in bank.bands().iter().zip(expected) {
            let mut dense = [0.0f32; 9];
            let w = &bank.weights()[band.offset as usize..][..band.len as usize];
            dense[band.first_bin as usize..][..w.len()].copy_from_slice(w);
            for (a, b) in dense.iter().zip(row) {
                assert!((*a as f64 - b).abs() < 1e-6, "{dense:?} vs {row:?}");
            }
        }
    }
}
