//! Reading WAV and FLAC files into mono f32 samples, with errors that say what is wrong and
//! what to do.

use std::path::Path;

/// Input sample rates hark accepts (sources and audio files): it resamples from any of them.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

use anyhow::{Context, Result, bail};
use hound::{SampleFormat, WavReader};

/// A decoded clip: mono samples in [-1, 1] at its own sample rate.
pub struct Clip {
    /// Mono samples (channels averaged).
    pub samples: Vec<f32>,
    /// The file's sample rate in Hz.
    pub sample_rate: u32,
}

/// Reads a whole FLAC or PCM (8/16/24/32-bit integer) or 32-bit float WAV file, downmixed
/// to mono. Tools that need every sample at once use this; captioning streams (`Stream`).
pub fn read(path: &Path) -> Result<Clip> {
    let stream = Stream::open(path)?;
    let sample_rate = stream.sample_rate();
    let mut samples = Vec::new();
    stream.for_each(|block| {
        samples.extend_from_slice(block);
        true
    })?;
    Ok(Clip {
        samples,
        sample_rate,
    })
}

/// Mono samples per block handed out by [`Stream::for_each`] (FLAC: the file's own blocks).
const BLOCK: usize = 4096;

/// A WAV or FLAC file decoded block by block into mono samples, so a file of any length
/// is captioned in constant memory.
pub struct Stream {
    path: std::path::PathBuf,
    opened: Opened,
}

impl Stream {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            opened: open(path)?,
        })
    }

    /// The file's sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        match &self.opened {
            Opened::Wav(r) => r.spec().sample_rate,
            Opened::Flac(r) => r.streaminfo().sample_rate,
        }
    }

    /// Seconds of audio the header declares.
    pub fn seconds(&self) -> f64 {
        let (frames, rate) = match &self.opened {
            Opened::Wav(r) => (u64::from(r.duration()), r.spec().sample_rate),
            Opened::Flac(r) => (
                r.streaminfo().samples.unwrap_or(0),
                r.streaminfo().sample_rate,
            ),
        };
        frames as f64 / f64::from(rate)
    }

    /// Decodes the file, calling `f` with each block of mono samples in [-1, 1] (channels
    /// averaged) until the end or until `f` returns false. A truncated or corrupt file is an
    /// error after the blocks before the damage were handed out.
    pub fn for_each(self, mut f: impl FnMut(&[f32]) -> bool) -> Result<()> {
        let path = self.path;
        match self.opened {
            Opened::Wav(reader) => {
                let spec = reader.spec();
                let channels = usize::from(spec.channels);
                if spec.sample_format == SampleFormat::Float {
                    wav_blocks(reader.into_samples::<f32>(), channels, &path, f)
                } else {
                    // Integers are scaled by their full scale.
                    let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                    let samples = reader
                        .into_samples::<i32>()
                        .map(move |s| s.map(|v| v as f32 * scale));
                    wav_blocks(samples, channels, &path, f)
                }
            }
            Opened::Flac(mut reader) => {
                let info = reader.streaminfo();
                let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
                let mut blocks = reader.blocks();
                let (mut buffer, mut mono) = (Vec::new(), Vec::new());
                while let Some(block) = blocks.read_next_or_eof(buffer).with_context(|| {
                    format!("{}: FLAC data is truncated or corrupt", path.display())
                })? {
                    let channels = block.channels();
                    mono.clear();
                    mono.extend((0..block.duration()).map(|i| {
                        (0..channels)
                            .map(|c| block.sample(c, i) as f32 * scale)
                            .sum::<f32>()
                            / channels as f32
                    }));
                    if !f(&mono) {
                        return Ok(());
                    }
                    buffer = block.into_buffer();
                }
                Ok(())
            }
        }
    }
}

/// Hands out `interleaved` samples as blocks of [`BLOCK`] mono samples.
fn wav_blocks(
    mut interleaved: impl Iterator<Item = hound::Result<f32>>,
    channels: usize,
    path: &Path,
    mut f: impl FnMut(&[f32]) -> bool,
) -> Result<()> {
    let corrupt = || format!("{}: WAV data is truncated or corrupt", path.display());
    let mut mono = Vec::with_capacity(BLOCK);
    // A multiply, not a divide per sample: decoding was 5 % of `hark caption`'s time.
    let inv = 1.0 / channels as f32;
    loop {
        mono.clear();
        while mono.len() < BLOCK {
            let (mut sum, mut got) = (0.0f32, 0);
            for s in interleaved.by_ref().take(channels) {
                sum += s.with_context(corrupt)?;
                got += 1;
            }
            // The end, or a last frame cut short: it is left out.
            if got < channels {
                break;
            }
            mono.push(sum * inv);
        }
        if mono.is_empty() || !f(&mono) {
            return Ok(());
        }
    }
}

/// Checks that `path` is a WAV or FLAC file hark can read, from its header alone (a file
/// source named in the configuration is checked before anything starts).
pub fn check(path: &Path) -> Result<()> {
    open(path).map(|_| ())
}

enum Opened {
    Wav(WavReader<std::io::BufReader<std::fs::File>>),
    Flac(claxon::FlacReader<std::fs::File>),
}

/// Opens the file by its magic bytes and checks its header.
fn open(path: &Path) -> Result<Opened> {
    let mut magic = [0u8; 4];
    let is_flac = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"fLaC";
    if is_flac {
        let reader = claxon::FlacReader::open(path)
            .with_context(|| format!("cannot read {} as a FLAC file", path.display()))?;
        let info = reader.streaminfo();
        if info.channels == 0
            || !SAMPLE_RATES.contains(&info.sample_rate)
            || !(1..=32).contains(&info.bits_per_sample)
        {
            bail!(
                "{}: FLAC header declares {} channels, {} bits at {} Hz (hark reads 1 to 32 bits at 1000 to 384000 Hz)",
                path.display(),
                info.channels,
                info.bits_per_sample,
                info.sample_rate
            );
        }
        return Ok(Opened::Flac(reader));
    }
    let reader = WavReader::open(path).with_context(|| {
        format!(
            "cannot read {} as a WAV file (hark reads PCM or float WAV)",
            path.display()
        )
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || !SAMPLE_RATES.contains(&spec.sample_rate) {
        bail!(
            "{}: WAV header declares {} channels at {} Hz (hark reads 1000 to 384000 Hz, one channel or more)",
            path.display(),
            spec.channels,
            spec.sample_rate
        );
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) | (SampleFormat::Int, 1..=32) => Ok(Opened::Wav(reader)),
        (format, bits) => bail!(
            "{}: unsupported WAV sample format {format:?} with {bits} bits; convert it to 16-bit PCM \
             (e.g. `sox in.wav -b 16 out.wav`)",
            path.display()
        ),
    }
}
