//! Cuts a stream of samples into overlapping frames, whatever the chunk sizes pushed.

use crate::config::{FrontendConfig, MAX_N_FFT};

/// Streaming framer: holds at most one frame of samples in a fixed buffer.
///
/// A frame is [`FrontendConfig::frame_length`] samples (`n_fft`, or `win_length` with
/// TensorFlow framing). With `center`, the stream starts with half a frame of zeros and
/// [`Framer::finish`] appends as many, so a whole signal yields exactly
/// [`FrontendConfig::frames_for`] frames, frame `t` centred on sample `t * hop`.
#[derive(Clone)]
pub struct Framer<T: Copy + Default> {
    buf: [T; MAX_N_FFT],
    len: usize,
    hop: usize,
    center: bool,
    filled: usize,
    received: bool,
}

impl<T: Copy + Default> Framer<T> {
    /// A framer for a validated config.
    pub fn new(cfg: &FrontendConfig) -> Self {
        let mut f = Self {
            buf: [T::default(); MAX_N_FFT],
            len: cfg.frame_length(),
            hop: cfg.hop_length,
            center: cfg.center,
            filled: 0,
            received: false,
        };
        f.reset();
        f
    }

    /// Forgets all buffered samples; the next sample starts a new signal.
    pub fn reset(&mut self) {
        self.buf[..self.len].fill(T::default());
        self.filled = if self.center { self.len / 2 } else { 0 };
        self.received = false;
    }

    /// Pushes `samples`, converting each with `convert`, and calls `on_frame` with the
    /// frame-length samples of every frame completed. Never allocates.
    pub fn push<S: Copy>(
        &mut self,
        samples: &[S],
        mut convert: impl FnMut(S) -> T,
        mut on_frame: impl FnMut(&[T]),
    ) {
        self.received |= !samples.is_empty();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.len - self.filled).min(rest.len());
            for (dst, &src) in self.buf[self.filled..self.filled + take]
                .iter_mut()
                .zip(rest)
            {
                *dst = convert(src);
            }
            self.filled += take;
            rest = &rest[take..];
            if self.filled == self.len {
                on_frame(&self.buf[..self.len]);
                self.buf.copy_within(self.hop..self.len, 0);
                self.filled -= self.hop;
            }
        }
    }

    /// Ends the signal: with `center`, pads half a frame of zeros and emits the last frames.
    /// A signal of no samples yields no frames. The framer is then reset.
    pub fn finish(&mut self, mut on_frame: impl FnMut(&[T])) {
        if self.received && self.center {
            let pad = [T::default(); MAX_N_FFT / 2];
            self.push(&pad[..self.len / 2], |x| x, &mut on_frame);
        }
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(cfg: &FrontendConfig, signal: &[i32], chunk: usize) -> Vec<Vec<i32>> {
        let mut f = Framer::<i32>::new(cfg);
        let mut out = Vec::new();
        for c in signal.chunks(chunk) {
            f.push(c, |x| x, |fr| out.push(fr.to_vec()));
        }
        f.finish(|fr| out.push(fr.to_vec()));
        out
    }

    #[test]
    fn centred_frames_start_with_half_a_frame_of_zeros() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 16,
            hop_length: 4,
            ..Default::default()
        };
        let signal: Vec<i32> = (1..=10).collect();
        let out = frames(&cfg, &signal, 3);
        assert_eq!(out.len(), cfg.frames_for(10));
        assert_eq!(out[0], [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(out[1], [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]);
    }

    #[test]
    fn uncentred_frames_drop_the_incomplete_tail() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 16,
            hop_length: 4,
            center: false,
            ..Default::default()
        };
        let signal: Vec<i32> = (0..27).collect();
        let out = frames(&cfg, &signal, 5);
        assert_eq!(out.len(), cfg.frames_for(27));
        assert_eq!(out[2][0], 8);
    }

    #[test]
    fn tensorflow_frames_hold_win_length_samples() {
        let cfg = FrontendConfig {
            n_fft: 16,
            win_length: 10,
            hop_length: 4,
            center: false,
            framing: crate::config::Framing::Tensorflow,
            ..Default::default()
        };
        let signal: Vec<i32> = (0..23).collect();
        let out = frames(&cfg, &signal, 6);
        assert_eq!(out.len(), cfg.frames_for(23));
        assert_eq!(out.len(), 4);
        assert_eq!(out[3], (12..22).collect::<Vec<_>>());
    }
}
