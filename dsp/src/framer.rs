//! Cuts a stream of samples into overlapping frames, whatever the chunk sizes pushed.

use crate::config::{FrontendConfig, MAX_N_FFT};

/// Streaming framer: holds at most one frame of samples in a fixed buffer.
///
/// With `center`, the stream starts with `n_fft / 2` zeros and [`Framer::finish`] appends
/// `n_fft / 2` more, so a whole signal yields exactly [`FrontendConfig::frames_for`] frames,
/// frame `t` centred on sample `t * hop`.
#[derive(Clone)]
pub struct Framer<T: Copy + Default> {
    buf: [T; MAX_N_FFT],
    n_fft: usize,
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
            n_fft: cfg.n_fft,
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
        self.buf[..self.n_fft].fill(T::default());
        self.filled = if self.center { self.n_fft / 2 } else { 0 };
        self.received = false;
    }

    /// Pushes `samples`, converting each with `convert`, and calls `on_frame` with the
    /// `n_fft` samples of every frame completed. Never allocates.
    pub fn push<S: Copy>(
        &mut self,
        samples: &[S],
        mut convert: impl FnMut(S) -> T,
        mut on_frame: impl FnMut(&[T]),
    ) {
        self.received |= !samples.is_empty();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.n_fft - self.filled).min(rest.len());
            for (dst, &src) in self.buf[self.filled..self.filled + take]
                .iter_mut()
                .zip(rest)
            {
                *dst = convert(src);
            }
            self.filled += take;
            rest = &rest[take..];
            if self.filled == self.n_fft {
                on_frame(&self.buf[..self.n_fft]);
                self.buf.copy_within(self.hop..self.n_fft, 0);
                self.filled -= self.hop;
            }
        }
    }

    /// Ends the signal: with `center`, pads `n_fft / 2` zeros and emits the last frames.
    /// A signal of no samples yields no frames. The framer is then reset.
    pub fn finish(&mut self, mut on_frame: impl FnMut(&[T])) {
        if self.received && self.center {
            let pad = [T::default(); MAX_N_FFT / 2];
            self.push(&pad[..self.n_fft / 2], |x| x, &mut on_frame);
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
}
