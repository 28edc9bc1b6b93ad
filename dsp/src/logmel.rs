//! The f32 streaming log-mel extractor: framer → window → real FFT → mel → log → normalise.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::config::{ConfigError, FrontendConfig, LogKind, MAX_MELS};
use crate::framer::Framer;
use crate::mel::MelBank;
use crate::window::Window;

/// Streaming log-mel extractor. All buffers are allocated by [`LogMel::new`]; pushing
/// samples and emitting frames never allocates.
pub struct LogMel {
    cfg: FrontendConfig,
    framer: Framer<f32>,
    stage: Stage,
    sanitized: u64,
}

/// Everything after framing, kept apart from the framer so both can be borrowed at once.
struct Stage {
    window: Window,
    mel: MelBank,
    fft: Arc<dyn RealToComplex<f32>>,
    fft_in: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
    out: [f32; MAX_MELS],
    magnitude: bool,
    log_offset: f32,
    clamp: bool,
    norm_mean: f32,
    inv_std: f32,
    n_mels: usize,
}

impl Stage {
    fn frame(&mut self, samples: &[f32]) -> &[f32] {
        // A TensorFlow-framed frame is shorter than the FFT: the rest is zero padding, rewritten
        // every frame because the FFT uses its input as scratch.
        let (head, tail) = self.fft_in.split_at_mut(samples.len());
        for ((dst, s), w) in head.iter_mut().zip(samples).zip(self.window.taps()) {
            *dst = s * w;
        }
        tail.fill(0.0);
        // Lengths are fixed at construction, so the FFT cannot fail.
        let _ =
            self.fft
                .process_with_scratch(&mut self.fft_in, &mut self.spectrum, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            let pw = c.re * c.re + c.im * c.im;
            *p = if self.magnitude { pw.sqrt() } else { pw };
        }
        let out = &mut self.out[..self.n_mels];
        self.mel.apply(&self.power, out);
        for v in out.iter_mut() {
            let floored = if self.clamp {
                v.max(self.log_offset)
            } else {
                *v + self.log_offset
            };
            *v = (floored.ln() - self.norm_mean) * self.inv_std;
        }
        out
    }
}

impl LogMel {
    /// Builds the extractor; fails with the offending parameter if the config is invalid.
    pub fn new(cfg: &FrontendConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        let stage = Stage {
            window: Window::new(cfg),
            mel: MelBank::new(cfg),
            fft_in: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            power: vec![0.0; cfg.n_bins()],
            fft,
            out: [0.0; MAX_MELS],
            magnitude: cfg.power == 1.0,
            log_offset: cfg.log_offset,
            clamp: cfg.log == LogKind::Clamp,
            norm_mean: cfg.norm_mean,
            inv_std: 1.0 / cfg.norm_std,
            n_mels: cfg.n_mels,
        };
        Ok(Self {
            cfg: cfg.clone(),
            framer: Framer::new(cfg),
            stage,
            sanitized: 0,
        })
    }

    /// The configuration this extractor implements.
    pub fn config(&self) -> &FrontendConfig {
        &self.cfg
    }

    /// Pushes f32 samples in [-1, 1] at `config().sample_rate`; calls `on_frame` with the
    /// `n_mels` values of each completed frame. NaN and ±inf samples are replaced by 0 and
    /// counted in [`LogMel::sanitized_samples`], so one bad sample cannot poison a window.
    pub fn push_f32(&mut self, samples: &[f32], mut on_frame: impl FnMut(&[f32])) {
        let Self {
            framer,
            stage,
            sanitized,
            ..
        } = self;
        let convert = |x: f32| {
            if x.is_finite() {
                x
            } else {
                *sanitized += 1;
                0.0
            }
        };
        framer.push(samples, convert, |frame| on_frame(stage.frame(frame)));
    }

    /// Pushes 16-bit PCM samples (scaled by 1/32768), converting one sample at a time.
    pub fn push_i16(&mut self, samples: &[i16], mut on_frame: impl FnMut(&[f32])) {
        let Self { framer, stage, .. } = self;
        framer.push(
            samples,
            |x| x as f32 / 32768.0,
            |frame| on_frame(stage.frame(frame)),
        );
    }

    /// Ends the signal (emitting the centre-padded last frames) and resets for the next one.
    pub fn finish(&mut self, mut on_frame: impl FnMut(&[f32])) {
        let Self { framer, stage, .. } = self;
        framer.finish(|frame| on_frame(stage.frame(frame)));
    }

    /// Non-finite f32 samples replaced by 0 since construction.
    pub fn sanitized_samples(&self) -> u64 {
        self.sanitized
    }

    /// Convenience for tools and tests (allocates): the log-mel of a whole signal,
    /// frame-major (`frames × n_mels`). The extractor is reset afterwards.
    pub fn process_signal(&mut self, samples: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.cfg.frames_for(samples.len()) * self.cfg.n_mels);
        self.push_f32(samples, |f| out.extend_from_slice(f));
        self.finish(|f| out.extend_from_slice(f));
        out
    }
}

/// Why a whole signal could not be turned into features.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// The front-end configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signal's sample rate cannot be converted.
    #[error(transparent)]
    Resample(#[from] crate::resample::ResampleError),
}

/// The log-mel of a whole mono signal at `rate` Hz, resampled to the front end's rate
/// first: frame-major, `frames × n_mels`. The one entry point for tools and the trainer,
/// built from the same streaming parts the daemon runs.
pub fn features(
    cfg: &FrontendConfig,
    samples: &[f32],
    rate: u32,
) -> Result<Vec<f32>, FeaturesError> {
    let mut mel = LogMel::new(cfg)?;
    let mut resampler = crate::resample::Resampler::new(rate, cfg.sample_rate)?;
    let mut out = Vec::new();
    for chunk in samples.chunks(4096) {
        resampler.push(chunk, |x| mel.push_f32(x, |f| out.extend_from_slice(f)));
    }
    resampler.finish(|x| mel.push_f32(x, |f| out.extend_from_slice(f)));
    mel.finish(|f| out.extend_from_slice(f));
    Ok(out)
}
