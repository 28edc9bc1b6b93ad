//! Reading audio files into mono f32 samples through symphonia: WAV (integer PCM of any
//! width, float, µ-law, A-law), FLAC, Ogg Vorbis, MP3 and AAC in MP4/M4A or ADTS. Errors say
//! what the file is and what to do.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, Decoder, DecoderOptions};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::config::SAMPLE_RATES;

/// What hark reads, for messages.
const READS: &str = "WAV, FLAC, Ogg Vorbis, MP3 or AAC/M4A";

/// A decoded clip: mono samples in [-1, 1] at its own sample rate.
pub struct Clip {
    /// Mono samples (channels averaged).
    pub samples: Vec<f32>,
    /// The file's sample rate in Hz.
    pub sample_rate: u32,
}

/// Reads a whole audio file, downmixed to mono. Tools that need every sample at once use
/// this; captioning streams ([`Stream`]).
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

/// Checks that `path` is an audio file hark can decode, from its header alone (a file source
/// named in the configuration is checked before anything starts).
pub fn check(path: &Path) -> Result<()> {
    Stream::open(path).map(|_| ())
}

/// An audio file decoded packet by packet into mono samples, so a file of any length is
/// captioned in constant memory.
pub struct Stream {
    /// The file's path, or "standard input", for messages.
    name: String,
    /// The container, named from the first bytes, for messages.
    container: &'static str,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    sample_rate: u32,
    frames: Option<u64>,
}

impl Stream {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open audio file {}", path.display()))?;
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        Self::probe(path.display().to_string(), file, hint)
    }

    /// Reads a whole audio file (not raw samples) from standard input, as it arrives.
    pub fn stdin() -> Result<Self> {
        Self::probe("standard input".into(), std::io::stdin(), Hint::new())
    }

    fn probe(
        name: String,
        mut input: impl Read + Send + Sync + 'static,
        hint: Hint,
    ) -> Result<Self> {
        // The first bytes name the container in messages; they are handed on unread.
        let mut head = Vec::with_capacity(64);
        input
            .by_ref()
            .take(64)
            .read_to_end(&mut head)
            .with_context(|| format!("cannot read {name}"))?;
        let container = container(&head);
        if head.is_empty() {
            bail!("{name} is empty: give an audio file ({READS})");
        }
        let source = ReadOnlySource::new(std::io::Cursor::new(head).chain(input));
        let stream = MediaSourceStream::new(Box::new(source), Default::default());
        let probed = unpanicked(&name, container, || {
            symphonia::default::get_probe().format(
                &hint,
                stream,
                // Gapless: an MP3's or AAC's encoder delay and padding are cut, so a clip
                // lasts as long as the audio it was made from.
                &FormatOptions {
                    enable_gapless: true,
                    ..Default::default()
                },
                &MetadataOptions::default(),
            )
        })?
        .map_err(|e| unreadable(&name, container, &e))?;
        let format = probed.format;
        let Some(track) = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        else {
            bail!(
                "{name}: {} {container} file without an audio track; hark reads {READS}",
                article(container)
            );
        };
        let params = &track.codec_params;
        let decoder = unpanicked(&name, container, || {
            symphonia::default::get_codecs().make(params, &DecoderOptions::default())
        })?
        .map_err(|_| {
                let codec = if params.codec == CODEC_TYPE_OPUS {
                    "Opus audio"
                } else {
                    "audio in a codec"
                };
                anyhow::anyhow!(
                    "{name}: {} {container} file with {codec} that hark cannot decode; convert it \
                     (e.g. `ffmpeg -i IN -ac 1 -ar 16000 out.wav` or `sox IN out.wav`), hark reads {READS}",
                    article(container)
                )
            })?;
        let sample_rate = params.sample_rate.unwrap_or(0);
        let channels = params.channels.map_or(0, |c| c.count());
        if channels == 0 || !SAMPLE_RATES.contains(&sample_rate) {
            bail!(
                "{name}: {container} header declares {channels} channels at {sample_rate} Hz (hark reads \
                 1000 to 384000 Hz, one channel or more)"
            );
        }
        Ok(Self {
            name,
            container,
            track: track.id,
            frames: params.n_frames,
            format,
            decoder,
            sample_rate,
        })
    }

    /// The file's sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Seconds of audio the header declares, if it does (a stream or an MP3 without a length
    /// header may not).
    pub fn seconds(&self) -> Option<f64> {
        self.frames.map(|n| n as f64 / f64::from(self.sample_rate))
    }

    /// Decodes the file, calling `f` with each packet's mono samples in [-1, 1] (channels
    /// averaged) until the end or until `f` returns false. A truncated or corrupt file is an
    /// error after the blocks before the damage were handed out.
    pub fn for_each(self, mut f: impl FnMut(&[f32]) -> bool) -> Result<()> {
        let Self {
            name,
            container,
            mut format,
            mut decoder,
            track,
            frames: declared,
            ..
        } = self;
        let corrupt = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("{name}: {container} data is truncated or corrupt ({e})")
        };
        let (mut interleaved, mut mono) = (None::<SampleBuffer<f32>>, Vec::new());
        let mut frames = 0u64;
        loop {
            let packet = match unpanicked(&name, container, || format.next_packet())? {
                Ok(p) => p,
                Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break;
                }
                Err(e) => return Err(corrupt(&e)),
            };
            if packet.track_id() != track {
                continue;
            }
            let decoded = unpanicked(&name, container, || decoder.decode(&packet))?
                .map_err(|e| corrupt(&e))?;
            let spec = *decoded.spec();
            let channels = spec.channels.count().max(1);
            let buffer = match &mut interleaved {
                Some(b) if b.capacity() >= decoded.capacity() * channels => b,
                slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
            };
            buffer.copy_interleaved_ref(decoded);
            // A multiply, not a divide per sample: decoding was 5 % of `hark caption`'s time.
            let inv = 1.0 / channels as f32;
            mono.clear();
            mono.extend(
                buffer
                    .samples()
                    .chunks_exact(channels)
                    .map(|frame| frame.iter().sum::<f32>() * inv),
            );
            frames += mono.len() as u64;
            if !mono.is_empty() && !f(&mono) {
                return Ok(());
            }
        }
        // The containers that declare a length (WAV, FLAC) end early only when cut.
        match declared {
            Some(declared) if frames < declared => Err(corrupt(&format_args!(
                "{frames} of the {declared} samples the header declares"
            ))),
            _ => Ok(()),
        }
    }
}

/// Runs a symphonia call, turning a panic inside it (it panics on some malformed headers, such
/// as a WAV declaring 0 Hz) into an error naming the file: hark never panics on input.
fn unpanicked<T>(name: &str, container: &str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        anyhow::anyhow!(
            "{name}: {} {container} file hark cannot read: its data is malformed ({why})",
            article(container)
        )
    })
}

/// The container named by a file's first bytes, for messages.
fn container(head: &[u8]) -> &'static str {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"RIFF") || at(0, b"RIFX") || at(0, b"RF64") {
        "WAV"
    } else if at(0, b"fLaC") {
        "FLAC"
    } else if at(0, b"OggS") {
        "Ogg"
    } else if at(0, b"ID3") || (head.len() > 1 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        "MP3 or AAC"
    } else if at(4, b"ftyp") {
        "MP4/M4A"
    } else if at(0, b"FORM") {
        "AIFF"
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        "Matroska/WebM"
    } else if at(0, b".snd") {
        "Sun/NeXT .au"
    } else {
        "unknown"
    }
}

/// "a" or "an" before a container's name ("an Ogg", "an MP3", "a WAV").
fn article(container: &str) -> &'static str {
    let vowel = container.starts_with(['A', 'E', 'I', 'O', 'U']);
    if vowel || container.starts_with("MP") {
        "an"
    } else {
        "a"
    }
}

/// The error for a file symphonia cannot demux, naming what it seems to be.
fn unreadable(name: &str, container: &str, e: &DecodeError) -> anyhow::Error {
    let what = match container {
        "unknown" => "not an audio file hark can read".to_string(),
        c => format!("{} {c} file hark cannot read ({e})", article(c)),
    };
    anyhow::anyhow!(
        "{name}: {what}; hark reads {READS} — convert it, e.g. `ffmpeg -i IN -ac 1 -ar 16000 out.wav`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_that_makes_the_decoder_panic_is_an_error_naming_the_file() {
        // A float WAV declaring 0 Hz: symphonia panics building its time base.
        let mut wav = b"RIFF\x2c\0\0\0WAVEfmt \x10\0\0\0\x03\0\x01\0".to_vec();
        wav.extend([0u8; 4]); // sample rate 0
        wav.extend(32_000u32.to_le_bytes());
        wav.extend([4, 0, 32, 0]);
        wav.extend(b"data\x08\0\0\0");
        wav.extend([0u8; 8]);
        let path = std::env::temp_dir().join(format!("hark-zero-rate-{}.wav", std::process::id()));
        std::fs::write(&path, &wav).unwrap();
        let err = Stream::open(&path).err().expect("refused").to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.contains("hark-zero-rate") && err.contains("malformed"),
            "{err}"
        );
    }

    #[test]
    fn containers_are_named_by_their_first_bytes() {
        assert_eq!(container(b"RIFF\0\0\0\0WAVE"), "WAV");
        assert_eq!(container(b"fLaC\0"), "FLAC");
        assert_eq!(container(b"OggS\0"), "Ogg");
        assert_eq!(container(b"ID3\x04"), "MP3 or AAC");
        assert_eq!(container(&[0xFF, 0xFB, 0x90]), "MP3 or AAC");
        assert_eq!(container(b"\0\0\0\x20ftypM4A "), "MP4/M4A");
        assert_eq!(container(b"this is not audio"), "unknown");
        assert_eq!(container(b""), "unknown");
    }
}
