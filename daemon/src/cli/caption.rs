//! `hark caption`: captions audio files window by window with a bundle, for one-off use and
//! for evaluating bundles through exactly the daemon's code path.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::TagConfig;
use crate::decode::DecodeParams;
use crate::model::captioner::ms;
use crate::model::{Alternative, Captioner, Tag};
use crate::pipeline::triggers::Baselines;
use crate::pipeline::window::{Window, Windower};
use crate::source::audio_file::Stream;

/// How `hark caption` judges a window: the decoding, tag thresholds, silence threshold and
/// trigger phrases (with their tokens) the daemon would use.
pub struct Settings {
    /// Decoding parameters.
    pub params: DecodeParams,
    /// Tag thresholds.
    pub tags: TagConfig,
    /// Windows quieter than this (RMS, dBFS) are silent.
    pub silence_dbfs: f32,
    /// `--trigger` phrases and their tokens.
    pub phrases: Vec<(String, Vec<u32>)>,
}

/// Captions each of `files` (`-`: an audio file on standard input) in turn, printing one line
/// (or one JSON object with `json`) per window as it is done. A file that cannot be read or
/// decoded is reported on stderr in one line and the next one is captioned; returns how many
/// failed.
pub fn caption_files(
    model: &dyn Captioner,
    settings: &Settings,
    files: &[PathBuf],
    json: bool,
) -> usize {
    // A progress line on a terminal for files longer than a minute.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut failed = 0;
    for file in files {
        let (name, stream) = if file == Path::new("-") {
            ("standard input".to_string(), Stream::stdin())
        } else {
            (file.display().to_string(), Stream::open(file))
        };
        let seconds = match &stream {
            Ok(s) if terminal => s.seconds().filter(|&s| s > 60.0),
            _ => None,
        };
        let emit = |w: FileWindow| {
            if seconds.is_some() {
                eprint!("\r\x1b[K");
            }
            if json {
                println!("{}", serde_json::to_string(&w)?);
            } else {
                println!("{}", describe(&w));
            }
            if let Some(seconds) = seconds {
                let done = (f64::from(w.end) / seconds).min(1.0);
                eprint!("{name}: {:.0} % of {seconds:.0} s", 100.0 * done);
            }
            Ok(())
        };
        let result = stream.and_then(|s| caption_file(model, settings, s, &name, emit));
        if seconds.is_some() {
            eprintln!();
        }
        if let Err(e) = result {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    failed
}

/// One window of a file: captioned, or silent.
#[derive(Debug, Serialize)]
pub struct FileWindow {
    /// The file.
    pub file: String,
    /// Window start, seconds from the file's start.
    pub start: f32,
    /// Window end, seconds.
    pub end: f32,
    /// RMS level of the window's audio, dBFS.
    pub level_dbfs: f32,
    /// Below the silence threshold: not captioned (`text` is null).
    pub silent: bool,
    /// Best caption.
    pub text: Option<String>,
    /// The model that made it.
    pub model: String,
    /// Tags at or over their thresholds, most probable first within each source.
    pub tags: Vec<Tag>,
    /// Its score (length-normalised log-probability).
    pub score: Option<f32>,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Each `--trigger` phrase's score under the window (absent without phrases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<PhraseScore>,
    /// Milliseconds spent per stage.
    pub timings_ms: Timings,
}

/// A phrase scored under a window: its length-normalised log-probability as the start of
/// the window's caption (0 is certain; the lower, the less the window sounds like it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseScore {
    /// The phrase as given.
    pub phrase: String,
    /// Its score.
    pub score: f32,
    /// What a `[[triggers]]` table compares with its threshold: `score` over the phrase's
    /// score under digital silence, plus the tag head's evidence when the phrase names one
    /// of its labels.
    pub trigger_score: f32,
}

/// Time per stage, milliseconds.
#[derive(Debug, Serialize, Default)]
pub struct Timings {
    /// Log-mel of the window (shared computation split evenly over windows).
    pub mel: f64,
    /// Encoder.
    pub encoder: f64,
    /// Decoding.
    pub decoding: f64,
    /// Scoring the `--trigger` phrases.
    pub phrases: f64,
}

/// One line of `hark caption`'s text output: file, window, caption and tags with scores.
pub fn describe(w: &FileWindow) -> String {
    let head = format!("{} [{:.1}-{:.1}s]", w.file, w.start, w.end);
    let Some(text) = &w.text else {
        return format!("{head} (silence, {:.1} dBFS)", w.level_dbfs);
    };
    let mut line = format!("{head} {text}");
    if !w.tags.is_empty() {
        let tags: Vec<String> = w
            .tags
            .iter()
            .map(|t| format!("{} {:.2}", t.label, t.score))
            .collect();
        line += &format!("  [{}]", tags.join(", "));
    }
    if !w.phrases.is_empty() {
        let phrases: Vec<String> = w
            .phrases
            .iter()
            .map(|p| format!("\"{}\" {:.2}", p.phrase, p.trigger_score))
            .collect();
        line += &format!("  {{{}}}", phrases.join(", "));
    }
    line
}

/// Captions `file` as it is read: one caption per window of the bundle's length, windows
/// `hop` apart (a file shorter than a window is one window), each handed to `emit` as soon
/// as it is done, so memory stays flat in file length and the first caption comes after one
/// window. Windows whose RMS level is below `silence_dbfs` are not captioned, as in
/// `hark run`, whose DSP thread cuts windows the same way ([`Windower`]).
// Long (~110 lines) on purpose: one read → window → caption → emit loop that a reader should
// see whole; its steps are the daemon's own (Windower, caption_mel, TagConfig, triggers).
pub fn caption_file(
    model: &dyn Captioner,
    settings: &Settings,
    stream: Stream,
    name: &str,
    mut emit: impl FnMut(FileWindow) -> Result<()>,
) -> Result<()> {
    let Settings {
        params,
        tags,
        silence_dbfs,
        phrases,
    } = settings;
    let silence_dbfs = *silence_dbfs;
    let bundle = model.bundle();
    let m = &bundle.manifest;
    let mut windower = Windower::new(&m.frontend, stream.sample_rate(), m.window_frames())
        .with_context(|| format!("{name}: cannot compute features"))?;
    let fps = m.frames_per_second();
    let tokens: Vec<Vec<u32>> = phrases.iter().map(|(_, t)| t.clone()).collect();
    let labels: Vec<Option<usize>> = phrases
        .iter()
        .map(|(p, _)| crate::pipeline::triggers::phrase_label(bundle, p))
        .collect();
    let mut baselines = Baselines::default();
    let mut ready = Vec::new();
    let mut failed = None;
    // Front-end time since the last window: that window's share.
    let mut mel_ms = 0.0;
    let mut caption = |window: Window, mel_ms: f64| -> Result<()> {
        let (start, end) = (
            window.start_frame as f32 / fps,
            (window.start_frame as usize + window.frames) as f32 / fps,
        );
        let mut out = FileWindow {
            file: name.to_string(),
            start,
            end,
            level_dbfs: window.level_dbfs,
            silent: true,
            text: None,
            model: m.name.clone(),
            tags: Vec::new(),
            score: None,
            tokens: Vec::new(),
            alternatives: Vec::new(),
            phrases: Vec::new(),
            timings_ms: Timings::default(),
        };
        if window.level_dbfs >= silence_dbfs {
            let c = model
                .caption_mel(&window.mel, params, &tokens)
                .with_context(|| format!("{name}: window {start:.1}-{end:.1} s"))?;
            out.silent = false;
            out.tags = tags.select(bundle, &c.tag_probabilities);
            out.text = Some(c.text);
            out.score = Some(c.score);
            out.tokens = c.tokens;
            out.alternatives = c.alternatives;
            let baseline = if tokens.is_empty() {
                Vec::new()
            } else {
                baselines.get(model, params, &tokens, window.frames)?
            };
            let head = c
                .tag_probabilities
                .first()
                .map_or(&[][..], |p| p.as_slice());
            let round = |x: f32| (x * 1000.0).round() / 1000.0;
            out.phrases = phrases
                .iter()
                .zip(&c.phrase_scores)
                .zip(baseline.iter().zip(&labels))
                .map(|(((phrase, _), &score), (&silence, &label))| PhraseScore {
                    phrase: phrase.clone(),
                    score: round(score),
                    trigger_score: round(crate::pipeline::triggers::score(
                        score, silence, label, head,
                    )),
                })
                .collect();
            out.timings_ms = Timings {
                mel: mel_ms,
                encoder: c.encoder_ms,
                decoding: c.decoding_ms,
                phrases: c.phrases_ms,
            };
        }
        emit(out)
    };
    stream.for_each(|block| {
        let t0 = Instant::now();
        windower.push(block, &mut ready);
        mel_ms += ms(t0);
        for window in ready.drain(..) {
            if let Err(e) = caption(window, std::mem::take(&mut mel_ms)) {
                failed = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let t0 = Instant::now();
    windower.finish(&mut ready);
    mel_ms += ms(t0);
    for window in ready.drain(..) {
        caption(window, std::mem::take(&mut mel_ms))?;
    }
    let sanitized = windower.sanitized_samples();
    if sanitized > 0 {
        log::warn!("{name}: {sanitized} non-finite sample(s) were replaced by silence");
    }
    Ok(())
}
