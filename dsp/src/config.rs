//! Every front-end parameter in one serialisable struct, carried by model bundles so the
//! daemon computes exactly the features the model was trained on.

use serde::{Deserialize, Serialize};

/// Largest supported FFT size; fixes the size of every internal buffer.
pub const MAX_N_FFT: usize = 2048;
/// Largest number of FFT bins (`MAX_N_FFT / 2 + 1`).
pub const MAX_BINS: usize = MAX_N_FFT / 2 + 1;
/// Largest supported number of mel bands.
pub const MAX_MELS: usize = 256;

/// Analysis window applied to each frame before the FFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Periodic Hann, as `scipy.signal.get_window("hann", n, fftbins=True)`.
    Hann,
    /// Periodic Hamming (0.54 − 0.46 cos).
    Hamming,
    /// All ones.
    Rectangular,
}

/// Hertz-to-mel mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above (librosa's default).
    Slaney,
    /// HTK: `2595 log10(1 + f / 700)` (torchaudio's default).
    Htk,
}

/// How frames are cut from the signal and where the window sits in the FFT input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// librosa / `torch.stft`: a frame is `n_fft` samples, the `win_length` window is centred
    /// in it.
    #[default]
    Librosa,
    /// `tf.signal.stft`: a frame is `win_length` samples, all of them windowed, then
    /// zero-padded at the end to `n_fft`. Frames are never centred (`center = false`).
    Tensorflow,
}

/// How the triangular mel filters are laid over the FFT bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelWeights {
    /// `librosa.filters.mel`: triangles linear in Hz between edges evenly spaced in mel.
    #[default]
    Librosa,
    /// `tf.signal.linear_to_mel_weight_matrix`: triangles linear in mel over each bin's mel
    /// value, and the DC bin weighs nothing. TensorFlow's own matrix is this with
    /// `mel_scale = "htk"` and `mel_norm = "none"`.
    Tensorflow,
}

/// Normalisation of each triangular mel filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelNorm {
    /// Divide each triangle by its width in Hz so filters have constant energy (librosa's default).
    Slaney,
    /// Peak of every triangle is 1.
    None,
}

/// How the mel energies are taken to the log domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// `ln(mel + log_offset)` (librosa-style recipes, YAMNet).
    #[default]
    Offset,
    /// `ln(max(mel, log_offset))`: torchaudio's `AmplitudeToDB` floor, as CED's front end
    /// (with `norm_std = ln(10) / 10` the output is `10·log10` in dB).
    Clamp,
}

/// The front end: framing, window, FFT, mel filter bank, log and normalisation.
///
/// Output value of band `m` in frame `t`:
/// `(ln(sum_k W[m,k] |X_t[k]|^power + log_offset) - norm_mean) / norm_std`, or with
/// `log = "clamp"` `ln(max(sum_k W[m,k] |X_t[k]|^power, log_offset))` in place of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendConfig {
    /// Input sample rate in Hz that the features are defined at (other rates are resampled).
    pub sample_rate: u32,
    /// FFT size in samples (a power of two for the fixed-point path), at most [`MAX_N_FFT`].
    pub n_fft: usize,
    /// Window length in samples (≤ `n_fft`); where a shorter window sits depends on `framing`.
    pub win_length: usize,
    /// Samples between consecutive frames.
    pub hop_length: usize,
    /// Window function.
    pub window: WindowKind,
    /// Centre frames on `t * hop_length` by padding `n_fft / 2` zeros at both ends
    /// (librosa's `center=True, pad_mode="constant"`).
    pub center: bool,
    /// Frame length and window placement: librosa's (the default) or TensorFlow's.
    pub framing: Framing,
    /// Number of mel bands, at most [`MAX_MELS`].
    pub n_mels: usize,
    /// Lowest filter edge in Hz.
    pub f_min: f32,
    /// Highest filter edge in Hz (≤ `sample_rate / 2`).
    pub f_max: f32,
    /// Hz-to-mel mapping.
    pub mel_scale: MelScale,
    /// Filter normalisation.
    pub mel_norm: MelNorm,
    /// Filter shape over the FFT bins: librosa's (the default) or TensorFlow's.
    pub mel_weights: MelWeights,
    /// Exponent of the magnitude spectrum: 1 (magnitude) or 2 (power).
    pub power: f32,
    /// Added before the natural log (or, with `log = "clamp"`, the floor the mel energy is
    /// raised to) so silence maps to `ln(log_offset)` instead of −∞.
    pub log_offset: f32,
    /// How `log_offset` keeps the log finite: added (the default) or as a floor.
    pub log: LogKind,
    /// Subtracted from every log-mel value (dataset statistic, stored by the trainer).
    pub norm_mean: f32,
    /// Every log-mel value is divided by this after subtracting `norm_mean`.
    pub norm_std: f32,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 512,
            hop_length: 160,
            window: WindowKind::Hann,
            center: true,
            framing: Framing::Librosa,
            n_mels: 64,
            f_min: 0.0,
            f_max: 8_000.0,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::Slaney,
            mel_weights: MelWeights::Librosa,
            power: 2.0,
            log_offset: 1e-6,
            log: LogKind::Offset,
            norm_mean: 0.0,
            norm_std: 1.0,
        }
    }
}

/// A front-end parameter that this implementation cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A parameter is outside the range this crate supports.
    #[error("frontend.{field} = {value} is invalid: {allowed}")]
    OutOfRange {
        /// Name of the offending field.
        field: &'static str,
        /// Its value, formatted.
        value: heapless::String<32>,
        /// What would be accepted.
        allowed: &'static str,
    },
}

fn out_of_range(
    field: &'static str,
    value: impl core::fmt::Display,
    allowed: &'static str,
) -> ConfigError {
    use core::fmt::Write;
    let mut s = heapless::String::new();
    // A value too long for 32 bytes is truncated; the field name already identifies it.
    let _ = write!(s, "{value}");
    ConfigError::OutOfRange {
        field,
        value: s,
        allowed,
    }
}

impl FrontendConfig {
    /// The front end of Google's YAMNet (its `features.py`): 16 kHz, a 400-sample periodic
    /// Hann window every 160 samples, not centred, zero-padded to a 512-point FFT
    /// (`tf.signal.stft`), magnitude, 64 HTK mel bands 125–7500 Hz from
    /// `tf.signal.linear_to_mel_weight_matrix`, `ln(mel + 0.001)`, no normalisation.
    pub fn yamnet() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            window: WindowKind::Hann,
            center: false,
            framing: Framing::Tensorflow,
            n_mels: 64,
            f_min: 125.0,
            f_max: 7_500.0,
            mel_scale: MelScale::Htk,
            mel_norm: MelNorm::None,
            mel_weights: MelWeights::Tensorflow,
            power: 1.0,
            log_offset: 0.001,
            log: LogKind::Offset,
            norm_mean: 0.0,
            norm_std: 1.0,
        }
    }

    /// The front end of CED (Dinkel et al., arXiv 2308.11957; torchaudio's `MelSpectrogram`
    /// and `AmplitudeToDB`): 16 kHz, a 512-sample periodic Hann window every 160 samples,
    /// centred, power, 64 HTK mel bands 0–8000 Hz without normalisation (librosa
    /// `htk=True, norm=None`, torchaudio's `melscale_fbanks`), `10·log10(max(mel, 1e-10))`.
    /// The graph centres with reflection where hark pads zeros: only a stream's first and
    /// last two frames differ.
    pub fn ced() -> Self {
        // The default's framing, window, FFT, band count and range, power: torchaudio's too.
        Self {
            mel_scale: MelScale::Htk,
            mel_norm: MelNorm::None,
            log_offset: 1e-10,
            log: LogKind::Clamp,
            norm_std: core::f32::consts::LN_10 / 10.0,
            ..Self::default()
        }
    }

    /// Number of FFT bins, `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Samples in one frame: `n_fft` with librosa framing, `win_length` with TensorFlow's.
    pub fn frame_length(&self) -> usize {
        match self.framing {
            Framing::Librosa => self.n_fft,
            Framing::Tensorflow => self.win_length,
        }
    }

    /// Number of frames a whole signal of `n_samples` yields (the rule of librosa, or of
    /// `tf.signal.frame` without `pad_end`): `1 + n / hop` centred, otherwise
    /// `1 + (n − frame_length) / hop`, none for a signal shorter than a frame.
    pub fn frames_for(&self, n_samples: usize) -> usize {
        let len = self.frame_length();
        if n_samples == 0 {
            0
        } else if self.center {
            1 + n_samples / self.hop_length
        } else if n_samples < len {
            0
        } else {
            1 + (n_samples - len) / self.hop_length
        }
    }

    /// Checks every parameter; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sample_rate < 1_000 || self.sample_rate > 384_000 {
            return Err(out_of_range(
                "sample_rate",
                self.sample_rate,
                "1000..=384000 Hz",
            ));
        }
        if self.n_fft < 16 || self.n_fft > MAX_N_FFT || !self.n_fft.is_power_of_two() {
            return Err(out_of_range(
                "n_fft",
                self.n_fft,
                "a power of two in 16..=2048",
            ));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(out_of_range("win_length", self.win_length, "1..=n_fft"));
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return Err(out_of_range("hop_length", self.hop_length, "1..=n_fft"));
        }
        if self.framing == Framing::Tensorflow {
            if self.center {
                return Err(out_of_range(
                    "center",
                    self.center,
                    "false with framing = \"tensorflow\" (tf.signal.stft does not centre)",
                ));
            }
            // The framer keeps the overlap of consecutive frames; it cannot skip samples.
            if self.hop_length > self.win_length {
                return Err(out_of_range(
                    "hop_length",
                    self.hop_length,
                    "1..=win_length with framing = \"tensorflow\"",
                ));
            }
        }
        if self.n_mels == 0 || self.n_mels > MAX_MELS {
            return Err(out_of_range("n_mels", self.n_mels, "1..=256"));
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(self.f_min >= 0.0 && self.f_min < nyquist) {
            return Err(out_of_range(
                "f_min",
                self.f_min,
                "0 <= f_min < sample_rate / 2",
            ));
        }
        if !(self.f_max > self.f_min && self.f_max <= nyquist) {
            return Err(out_of_range(
                "f_max",
                self.f_max,
                "f_min < f_max <= sample_rate / 2",
            ));
        }
        if self.power != 1.0 && self.power != 2.0 {
            return Err(out_of_range(
                "power",
                self.power,
                "1.0 (magnitude) or 2.0 (power)",
            ));
        }
        if !(self.log_offset > 0.0 && self.log_offset.is_finite()) {
            return Err(out_of_range(
                "log_offset",
                self.log_offset,
                "a finite value > 0",
            ));
        }
        if !self.norm_mean.is_finite() {
            return Err(out_of_range("norm_mean", self.norm_mean, "a finite number"));
        }
        if !(self.norm_std > 0.0 && self.norm_std.is_finite()) {
            return Err(out_of_range(
                "norm_std",
                self.norm_std,
                "a finite value > 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        FrontendConfig::default().validate().unwrap();
    }

    #[test]
    fn invalid_n_fft_error_names_the_field_and_the_allowed_values() {
        let cfg = FrontendConfig {
            n_fft: 500,
            ..Default::default()
        };
        let msg = cfg.validate().unwrap_err().to_string();
        assert_eq!(
            msg,
            "frontend.n_fft = 500 is invalid: a power of two in 16..=2048"
        );
    }

    #[test]
    fn f_max_above_nyquist_is_refused() {
        let cfg = FrontendConfig {
            f_max: 9000.0,
            ..Default::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("frontend.f_max = 9000")
        );
    }

    #[test]
    fn frame_count_follows_librosa() {
        let cfg = FrontendConfig::default();
        // librosa.feature.melspectrogram(y=np.zeros(16000), n_fft=512, hop_length=160).shape[1] == 101
        assert_eq!(cfg.frames_for(16_000), 101);
        assert_eq!(cfg.frames_for(1), 1);
        assert_eq!(cfg.frames_for(0), 0);
        let cfg = FrontendConfig {
            center: false,
            ..cfg
        };
        assert_eq!(cfg.frames_for(511), 0);
        assert_eq!(cfg.frames_for(512), 1);
        assert_eq!(cfg.frames_for(672), 2);
    }

    #[test]
    fn tensorflow_frames_span_the_window_not_the_fft() {
        // tf.signal.stft(tf.zeros(n), 400, 160, 512).shape[0] for n = 399, 400, 560, 16000
        let cfg = FrontendConfig::yamnet();
        cfg.validate().unwrap();
        assert_eq!(cfg.frame_length(), 400);
        assert_eq!(cfg.frames_for(399), 0);
        assert_eq!(cfg.frames_for(400), 1);
        assert_eq!(cfg.frames_for(560), 2);
        assert_eq!(cfg.frames_for(16_000), 98);
    }

    #[test]
    fn tensorflow_framing_refuses_centring_and_hops_longer_than_the_window() {
        let centred = FrontendConfig {
            center: true,
            ..FrontendConfig::yamnet()
        };
        assert_eq!(
            centred.validate().unwrap_err().to_string(),
            "frontend.center = true is invalid: false with framing = \"tensorflow\" \
             (tf.signal.stft does not centre)"
        );
        let gaps = FrontendConfig {
            hop_length: 401,
            ..FrontendConfig::yamnet()
        };
        assert!(
            gaps.validate()
                .unwrap_err()
                .to_string()
                .starts_with("frontend.hop_length = 401 is invalid")
        );
    }

    #[test]
    fn missing_new_fields_keep_the_librosa_meaning_and_unknown_ones_are_refused() {
        let cfg: FrontendConfig = serde_json::from_str(r#"{"n_mels": 40}"#).unwrap();
        assert_eq!(cfg.framing, Framing::Librosa);
        assert_eq!(cfg.mel_weights, MelWeights::Librosa);
        let yamnet = serde_json::to_string(&FrontendConfig::yamnet()).unwrap();
        assert!(yamnet.contains(r#""framing":"tensorflow""#), "{yamnet}");
        assert_eq!(
            serde_json::from_str::<FrontendConfig>(&yamnet).unwrap(),
            FrontendConfig::yamnet()
        );
        assert!(serde_json::from_str::<FrontendConfig>(r#"{"framin": "librosa"}"#).is_err());
    }
}
