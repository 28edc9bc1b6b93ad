//! The window assembler: turns the stream of log-mel frames into caption windows of
//! `window` frames every `hop` frames, each with its audio level. Pure logic, no threads.
//!
//! Windows are `[k·hop, k·hop + window)`; at the end of a stream, frames after the last such
//! window are captioned in one last window of the same length that ends with the stream (a
//! stream shorter than one window is one shorter window). Every window but a short stream's
//! thus has the length the encoder was planned for and the model was trained on. These are
//! the windows `hark caption` cuts from a whole file, so replaying a file through `hark run`
//! gives the same captions.

use std::collections::VecDeque;

/// One caption window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Position in the stream, counting from 0.
    pub index: u64,
    /// First frame (stream position).
    pub start_frame: u64,
    /// Frames in the window.
    pub frames: usize,
    /// Log-mel, frame-major: `frames × n_mels`.
    pub mel: Vec<f32>,
    /// RMS level of the window's audio, dBFS (a full-scale square wave is 0 dBFS).
    pub level_dbfs: f32,
}

/// Lowest level reported: digital silence.
pub const FLOOR_DBFS: f32 = -120.0;

/// A sample's contribution to the level: NaN and ±inf count as silence (as the front end
/// treats them) and samples beyond full scale as full scale (as an ADC clips), so one bad
/// sample can neither silence a window nor push its level above 0 dBFS.
pub fn sample_power(x: f32) -> f64 {
    if x.is_finite() {
        f64::from(x.clamp(-1.0, 1.0)).powi(2)
    } else {
        0.0
    }
}

/// Assembles windows from frames and audio levels.
pub struct Assembler {
    n_mels: usize,
    window: usize,
    hop: usize,
    /// Samples per frame hop: audio energy is kept per block of this many samples,
    /// block `i` lying under frame `i`.
    hop_samples: usize,
    /// Frames a centred front end adds after the audio (1: the frame centred on the last
    /// sample, half of it padding); the stream's end window ignores them.
    overhang: u64,
    /// The last `window` frames.
    mel: VecDeque<f32>,
    /// Frames seen.
    frames: u64,
    /// Frame count at which the next window is complete.
    next_end: u64,
    emitted: u64,
    /// Mean square per completed block, the newest last; `first_block` is the number of
    /// the oldest one kept.
    blocks: VecDeque<f64>,
    first_block: u64,
    partial_sum: f64,
    partial_len: usize,
}

impl Assembler {
    /// Windows of `window` frames every `hop` frames (`1 <= hop <= window`).
    pub fn new(n_mels: usize, window: usize, hop: usize, hop_samples: usize) -> Self {
        Self::centred(n_mels, window, hop, hop_samples, false)
    }

    /// As [`Assembler::new`] for a front end that centres its frames (`centred`): a stream
    /// of exactly one window's audio then gives one window, not a second one moved by the
    /// frame of padding at the end.
    pub fn centred(
        n_mels: usize,
        window: usize,
        hop: usize,
        hop_samples: usize,
        centred: bool,
    ) -> Self {
        assert!(window >= 1 && (1..=window).contains(&hop) && n_mels >= 1 && hop_samples >= 1);
        Self {
            n_mels,
            window,
            hop,
            hop_samples,
            overhang: u64::from(centred),
            mel: VecDeque::with_capacity(window * n_mels),
            frames: 0,
            next_end: window as u64,
            emitted: 0,
            blocks: VecDeque::with_capacity(window + 64),
            first_block: 0,
            partial_sum: 0.0,
            partial_len: 0,
        }
    }

    /// Accounts the energy of audio samples (at the front end's rate), in stream order.
    pub fn push_samples(&mut self, samples: &[f32]) {
        for &s in samples {
            self.partial_sum += sample_power(s);
            self.partial_len += 1;
            if self.partial_len == self.hop_samples {
                self.blocks
                    .push_back(self.partial_sum / self.hop_samples as f64);
                self.partial_sum = 0.0;
                self.partial_len = 0;
            }
        }
        // Blocks older than the oldest frame a window can still start at (the stream's end
        // window starts `window` frames before the last frame) are never read again.
        let keep_from = self.frames.saturating_sub(self.window as u64);
        while self.first_block < keep_from && !self.blocks.is_empty() {
            self.blocks.pop_front();
            self.first_block += 1;
        }
    }

    /// Adds one log-mel frame; returns a window when one is complete.
    pub fn push_frame(&mut self, frame: &[f32]) -> Option<Window> {
        debug_assert_eq!(frame.len(), self.n_mels);
        if self.mel.len() == self.window * self.n_mels {
            self.mel.drain(..self.n_mels);
        }
        self.mel.extend(frame.iter().copied());
        self.frames += 1;
        if self.frames == self.next_end {
            self.next_end += self.hop as u64;
            return Some(self.emit(self.frames - self.window as u64));
        }
        None
    }

    /// Ends the stream: if frames came after the last window, one more window of the last
    /// `window` frames (all of them if the stream is shorter).
    pub fn finish(&mut self) -> Option<Window> {
        let start = self.frames.saturating_sub(self.window as u64);
        let last_end = if self.emitted == 0 {
            0
        } else {
            (self.emitted - 1) * self.hop as u64 + self.window as u64 + self.overhang
        };
        if self.frames == 0 || self.frames <= last_end {
            return None;
        }
        if self.partial_len > 0 {
            self.blocks
                .push_back(self.partial_sum / self.partial_len as f64);
            self.partial_len = 0;
        }
        Some(self.emit(start))
    }

    fn emit(&mut self, start: u64) -> Window {
        let frames = (self.frames - start) as usize;
        let buffered = self.mel.len() / self.n_mels;
        let skip = (buffered - frames) * self.n_mels;
        let mel: Vec<f32> = self.mel.iter().skip(skip).copied().collect();
        let window = Window {
            index: self.emitted,
            start_frame: start,
            frames,
            mel,
            level_dbfs: self.level(start, self.frames),
        };
        self.emitted += 1;
        window
    }

    /// RMS level over blocks `[start, end)`, those that exist.
    fn level(&self, start: u64, end: u64) -> f32 {
        let from = start.saturating_sub(self.first_block) as usize;
        let to = (end.saturating_sub(self.first_block) as usize).min(self.blocks.len());
        if from >= to {
            return FLOOR_DBFS;
        }
        let mean = self.blocks.range(from..to).sum::<f64>() / (to - from) as f64;
        if mean <= 0.0 {
            return FLOOR_DBFS;
        }
        ((10.0 * mean.log10()) as f32).max(FLOOR_DBFS)
    }
}

/// Audio at the source's rate in, caption windows out: resampler → streaming log-mel →
/// assembler. `hark run`'s DSP thread and `hark caption` both run it, so a file gives the
/// same windows either way.
pub struct Windower {
    resampler: dsp::resample::Resampler,
    mel: dsp::LogMel,
    assembler: Assembler,
}

impl Windower {
    /// Windows of `window.0` frames every `window.1` frames of `frontend`'s features, from
    /// audio at `source_rate` Hz.
    pub fn new(
        frontend: &dsp::FrontendConfig,
        source_rate: u32,
        window: (usize, usize),
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        Ok(Self {
            resampler: dsp::resample::Resampler::new(source_rate, frontend.sample_rate)?,
            mel: dsp::LogMel::new(frontend).context("the bundle's front end")?,
            assembler: Assembler::centred(
                frontend.n_mels,
                window.0,
                window.1,
                frontend.hop_length,
                frontend.center,
            ),
        })
    }

    /// Pushes mono samples; windows they complete are appended to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<Window>) {
        let Self {
            resampler,
            mel,
            assembler,
        } = self;
        resampler.push(samples, |x| {
            assembler.push_samples(x);
            mel.push_f32(x, |f| out.extend(assembler.push_frame(f)));
        });
    }

    /// Ends the stream: flushes the resampler and the front end, then the window that ends
    /// with the stream if frames came after the last one ([`Assembler::finish`]).
    pub fn finish(&mut self, out: &mut Vec<Window>) {
        let Self {
            resampler,
            mel,
            assembler,
        } = self;
        resampler.finish(|x| {
            assembler.push_samples(x);
            mel.push_f32(x, |f| out.extend(assembler.push_frame(f)));
        });
        mel.finish(|f| out.extend(assembler.push_frame(f)));
        out.extend(assembler.finish());
    }

    /// Non-finite input samples the front end replaced by silence so far.
    pub fn sanitized_samples(&self) -> u64 {
        self.mel.sanitized_samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames whose single mel value is the frame number, so windows can be read off.
    fn run(window: usize, hop: usize, total: usize) -> Vec<(u64, Vec<f32>)> {
        let mut a = Assembler::new(1, window, hop, 4);
        let mut out = Vec::new();
        for i in 0..total {
            a.push_samples(&[0.5; 4]);
            if let Some(w) = a.push_frame(&[i as f32]) {
                out.push((w.start_frame, w.mel));
            }
        }
        if let Some(w) = a.finish() {
            out.push((w.start_frame, w.mel));
        }
        out
    }

    /// The windows cut from a whole file of `total` frames: every `hop`, the last moved back
    /// to end with the file.
    fn batch(window: usize, hop: usize, total: usize) -> Vec<(u64, Vec<f32>)> {
        let mut starts = vec![0];
        while starts.last().unwrap() + window < total {
            let next = starts.last().unwrap() + hop;
            starts.push(next.min(total - window));
        }
        starts
            .into_iter()
            .map(|s| {
                (
                    s as u64,
                    (s..(s + window).min(total)).map(|f| f as f32).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn streaming_windows_equal_the_batch_windows() {
        for (window, hop) in [(5, 5), (5, 2), (4, 1), (1, 1), (6, 3)] {
            for total in 1..25 {
                assert_eq!(
                    run(window, hop, total),
                    batch(window, hop, total),
                    "w{window} h{hop} n{total}"
                );
            }
        }
    }

    #[test]
    fn the_last_window_ends_with_the_stream_at_full_length() {
        // 12 frames, windows of 5 every 3: [0, 5), [3, 8), [6, 11), then [7, 12), not [9, 12).
        let starts: Vec<u64> = run(5, 3, 12).iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, [0, 3, 6, 7]);
        let (_, last) = run(5, 3, 12).pop().unwrap();
        assert_eq!(last, [7.0, 8.0, 9.0, 10.0, 11.0]);
        // Shorter than one window: the whole stream.
        assert_eq!(run(5, 3, 3), [(0, vec![0.0, 1.0, 2.0])]);
        // Ends on a window: nothing more.
        assert_eq!(run(5, 3, 11).len(), 3);
    }

    #[test]
    fn the_end_window_level_covers_its_own_frames() {
        // 11 frames, windows of 5 every 5; only frame 6 is loud (0.5: -13 dBFS over 5 frames).
        let mut a = Assembler::new(1, 5, 5, 10);
        let mut levels = Vec::new();
        for i in 0..11 {
            a.push_samples(&[if i == 6 { 0.5 } else { 0.0 }; 10]);
            levels.extend(a.push_frame(&[0.0]).map(|w| w.level_dbfs));
        }
        let end = a.finish().unwrap();
        assert_eq!((end.start_frame, end.frames), (6, 5));
        let loud = 10.0 * (0.25f32 / 5.0).log10();
        assert_eq!(levels[0], FLOOR_DBFS);
        assert!((levels[1] - loud).abs() < 1e-3 && (end.level_dbfs - loud).abs() < 1e-3);
    }

    #[test]
    fn a_centred_front_ends_padding_frame_makes_no_window_of_its_own() {
        let run = |total: usize| {
            let mut a = Assembler::centred(1, 5, 5, 4, true);
            let mut starts = Vec::new();
            for i in 0..total {
                a.push_samples(&[0.5; 4]);
                starts.extend(a.push_frame(&[i as f32]).map(|w| w.start_frame));
            }
            starts.extend(a.finish().map(|w| w.start_frame));
            starts
        };
        // One window's audio is 5 frames and the padding frame: one window.
        assert_eq!(run(6), [0]);
        // A frame of audio more: the end window.
        assert_eq!(run(7), [0, 2]);
        // Shorter than one window: still captioned.
        assert_eq!(run(1), [0]);
    }

    #[test]
    fn no_frames_no_window() {
        assert!(run(5, 2, 0).is_empty());
    }

    #[test]
    fn level_is_rms_in_dbfs() {
        let mut a = Assembler::new(1, 4, 4, 10);
        let mut level = None;
        for _ in 0..4 {
            a.push_samples(&[0.1; 10]);
            if let Some(w) = a.push_frame(&[0.0]) {
                level = Some(w.level_dbfs);
            }
        }
        assert!((level.unwrap() - -20.0).abs() < 1e-3, "{level:?}");

        let mut silent = Assembler::new(1, 2, 2, 10);
        silent.push_samples(&[0.0; 20]);
        silent.push_frame(&[0.0]);
        assert_eq!(silent.push_frame(&[0.0]).unwrap().level_dbfs, FLOOR_DBFS);
    }

    #[test]
    fn bad_samples_neither_silence_nor_overdrive_a_window() {
        // One NaN among -20 dBFS audio: the window keeps (almost) its level.
        let mut a = Assembler::new(1, 2, 2, 10);
        let mut block = [0.1f32; 10];
        block[3] = f32::NAN;
        a.push_samples(&block);
        a.push_samples(&[0.1; 10]);
        a.push_frame(&[0.0]);
        let level = a.push_frame(&[0.0]).unwrap().level_dbfs;
        assert!((level - -20.0).abs() < 0.5, "{level}");

        // inf and 1e30 count as silence and full scale: the level stays finite and <= 0 dBFS.
        let mut b = Assembler::new(1, 2, 2, 10);
        b.push_samples(&[
            f32::INFINITY,
            1e30,
            -1e30,
            f32::NEG_INFINITY,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ]);
        b.push_samples(&[1e30; 10]);
        b.push_frame(&[0.0]);
        let level = b.push_frame(&[0.0]).unwrap().level_dbfs;
        assert!(level.is_finite() && level <= 0.0 && level > -1.0, "{level}");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut a = Assembler::new(2, 10, 3, 8);
        for _ in 0..10_000 {
            a.push_samples(&[0.25; 8]);
            a.push_frame(&[0.0, 1.0]);
        }
        assert!(a.mel.len() <= 20);
        assert!(a.blocks.len() <= 12, "{}", a.blocks.len());
    }
}
