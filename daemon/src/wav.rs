//! Reading WAV and FLAC files into mono f32 samples, with errors that say what is wrong and
//! what to do.

use std::path::Path;

use anyhow::{Context, Result, bail};
use hound::{SampleFormat, WavReader};

use crate::config::SAMPLE_RATES;

/// A decoded clip: mono samples in [-1, 1] at its own sample rate.
pub struct Clip {
    /// Mono samples (channels averaged).
    pub samples: Vec<f32>,
    /// The file's sample rate in Hz.
    pub sample_rate: u32,
}

/// Reads a FLAC or a PCM (8/16/24/32-bit integer) or 32-bit float WAV file and downmixes it
/// to mono.
pub fn read(path: &Path) -> Result<Clip> {
    match open(path)? {
        Opened::Flac(reader) => read_flac(path, reader),
        Opened::Wav(reader) => read_wav(path, reader),
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

fn read_wav(path: &Path, reader: WavReader<std::io::BufReader<std::fs::File>>) -> Result<Clip> {
    let spec = reader.spec();
    let interleaved: Vec<f32> = if spec.sample_format == SampleFormat::Float {
        reader.into_samples::<f32>().collect::<Result<_, _>>()
    } else {
        let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
        reader
            .into_samples::<i32>()
            .map(|s| s.map(|v| v as f32 * scale))
            .collect()
    }
    .with_context(|| format!("{}: WAV data is truncated or corrupt", path.display()))?;
    Ok(Clip {
        samples: downmix(&interleaved, usize::from(spec.channels)),
        sample_rate: spec.sample_rate,
    })
}

fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

fn read_flac(path: &Path, mut reader: claxon::FlacReader<std::fs::File>) -> Result<Clip> {
    let info = reader.streaminfo();
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f32;
    let interleaved: Vec<f32> = reader
        .samples()
        .map(|s| s.map(|v| v as f32 * scale))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: FLAC data is truncated or corrupt", path.display()))?;
    Ok(Clip {
        samples: downmix(&interleaved, info.channels as usize),
        sample_rate: info.sample_rate,
    })
}
