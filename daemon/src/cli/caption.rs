//! `hark caption`: captions audio files window by window with a bundle, for one-off use and
//! for evaluating bundles through exactly the daemon's code path.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::decode::DecodeParams;
use crate::model::TagError;
use crate::model::captioner::ms;
use crate::model::{Alternative, Captioner, Tag};
use crate::pipeline::judge::{Judge, Verdict};
use crate::pipeline::triggers::{Phrase, Triggers};
use crate::pipeline::window::{Window, Windower};
use crate::sounds::SoundScore;
use crate::source::audio_file::Stream;

/// How `hark caption` captions: the model, the decoding, the window and the judge (tags,
/// silence, speech policy, triggers) that `hark run` would use with the same configuration.
pub struct Settings {
    /// The loaded model.
    pub model: Arc<dyn Captioner>,
    /// Decoding parameters.
    pub params: DecodeParams,
    /// The daemon's window judge, with `--trigger` phrases as extra phrases.
    pub judge: Judge,
    /// Window and hop, frames.
    pub window: (usize, usize),
}

/// The settings of `cfg` (loaded and validated as `hark run` loads it), with every tag head's
/// threshold set to `tag_threshold` if given and `phrases` scored on every window.
pub fn settings(cfg: &Config, tag_threshold: Option<f32>, phrases: &[String]) -> Result<Settings> {
    let dir = crate::model::resolve_bundle(cfg.model.bundle.as_deref())?;
    let model = crate::model::load(&dir, cfg.model.backend)?;
    let bundle = model.bundle();
    let manifest = &bundle.manifest;
    let params = manifest
        .decoding
        .with_overrides(&cfg.decoding, manifest.tokens.max_len)?;
    let mut tags = cfg.tags.clone();
    if let Some(t) = tag_threshold {
        for head in &manifest.tags {
            tags.thresholds.insert(head.name.clone(), t);
        }
    }
    tags.validate(bundle)
        .map_err(|e| match (e, tag_threshold) {
            (TagError::Threshold { value, .. }, Some(_)) => {
                anyhow::anyhow!("--tag-threshold {value}: must be in (0, 1]")
            }
            (other, _) => anyhow::anyhow!("{other}"),
        })?;
    let triggers = Triggers::build(&cfg.triggers, bundle)?;
    let extra = phrases
        .iter()
        .map(|p| Phrase::new(bundle, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--trigger: {e}"))?;
    let judge = Judge::new(
        cfg.events.silence_dbfs,
        tags,
        cfg.privacy.speech,
        triggers,
        extra,
    );
    let window = crate::service::window_frames(cfg, model.as_ref());
    Ok(Settings {
        model,
        params,
        judge,
        window,
    })
}

/// Scores the learned sounds `names` on every window, as `hark run` does.
pub fn load_sounds(cfg: &Config, settings: &mut Settings, names: &[String]) -> Result<()> {
    let store = crate::sounds::Store::of(&cfg.sounds)?;
    let profiles = names.iter().map(|n| (n.clone(), store.read(n))).collect();
    let (sounds, problems) = crate::sounds::Sounds::build(settings.model.bundle(), profiles);
    if let Some(problem) = problems.first() {
        anyhow::bail!("--sound: {problem}");
    }
    settings.judge.set_sounds(sounds);
    Ok(())
}

/// Captions each of `files` (`-`: an audio file on standard input) in turn, printing one line
/// (or one JSON object with `json`) per window as it is done. A file that cannot be read or
/// decoded is reported on stderr in one line and the next one is captioned; returns how many
/// failed.
pub fn caption_files(settings: &mut Settings, files: &[PathBuf], json: bool) -> usize {
    let model = settings.model.clone();
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
            // writeln!, not println!: a reader that goes away (`| head`) ends captioning
            // instead of panicking.
            let line = if json {
                serde_json::to_string(&w)?
            } else {
                describe(&w)
            };
            writeln!(std::io::stdout(), "{line}")?;
            if let Some(seconds) = seconds {
                let done = (f64::from(w.end) / seconds).min(1.0);
                eprint!("{name}: {:.0} % of {seconds:.0} s", 100.0 * done);
            }
            Ok(())
        };
        let result = stream.and_then(|s| caption_file(model.as_ref(), settings, s, &name, emit));
        if seconds.is_some() {
            eprintln!();
        }
        if let Err(e) = result {
            if closed_stdout(&e) {
                break;
            }
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    failed
}

/// Whether `e` is standard output's reader having gone away.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
    /// Not published: speech under `privacy.speech = "drop"`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// Tags at or over their thresholds, most probable first within each source.
    pub tags: Vec<Tag>,
    /// Whether a tag head heard speech (null without a speech label).
    pub speech: Option<bool>,
    /// Its score (length-normalised log-probability; null when redacted).
    pub score: Option<f32>,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// The configured triggers that fired on the window (as on `trigger/<name>`).
    pub triggers: Vec<TriggerHit>,
    /// Each `--trigger` phrase's score under the window (absent without phrases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<PhraseScore>,
    /// Each `--sound`'s score on the window, as `hark run` computes it (absent without).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sounds: Vec<SoundScore>,
    /// The window's sound embedding (`hark learn`; never printed).
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
    /// Milliseconds spent per stage.
    pub timings_ms: Timings,
}

/// A trigger that fired on a window: what `hark run` publishes on `trigger/<name>`, less the
/// window's times and caption (the window's own fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerHit {
    /// The trigger's name.
    pub trigger: String,
    /// Its best phrase on the window.
    pub phrase: String,
    /// That phrase's score.
    pub score: f32,
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
    /// of its labels, plus the bundle's caption weight when `in_caption`.
    pub trigger_score: f32,
    /// Whether the window's caption or one of its alternatives says the phrase (its words,
    /// or their synonyms in the bundle's `[triggers] synonyms`).
    pub in_caption: bool,
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
    if w.dropped {
        return format!("{head} (speech, not shown: privacy.speech = \"drop\")");
    }
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
    for t in &w.triggers {
        line += &format!("  fired {} (\"{}\" {:.2})", t.trigger, t.phrase, t.score);
    }
    for s in &w.sounds {
        let fired = if s.fired { " fired" } else { "" };
        line += &format!("  sound {} {:.2}{fired}", s.sound, s.score);
    }
    line
}

/// Captions `file` as it is read: windows of the settings' length and hop (a file shorter
/// than a window is one window), cut by the daemon's [`Windower`] and judged by its
/// [`Judge`], each handed to `emit` as soon as it is done, so memory stays flat in file length
/// and the first caption comes after one window.
pub fn caption_file(
    model: &dyn Captioner,
    settings: &mut Settings,
    stream: Stream,
    name: &str,
    mut emit: impl FnMut(FileWindow) -> Result<()>,
) -> Result<()> {
    let Settings {
        params,
        judge,
        window,
        ..
    } = settings;
    let bundle = model.bundle();
    let m = &bundle.manifest;
    let mut windower = Windower::new(&m.frontend, stream.sample_rate(), *window)
        .with_context(|| format!("{name}: cannot compute features"))?;
    let fps = m.frames_per_second();
    let mut ready = Vec::new();
    let mut failed = None;
    // Front-end time since the last window: that window's share.
    let mut mel_ms = 0.0;
    let mut caption = |window: Window, mel_ms: f64| -> Result<()> {
        let (start, end) = (
            window.start_frame as f32 / fps,
            (window.start_frame as usize + window.frames) as f32 / fps,
        );
        let verdict = judge
            .judge(model, params, &window.mel, window.frames, window.level_dbfs)
            .with_context(|| format!("{name}: window {start:.1}-{end:.1} s"))?;
        let out = file_window(
            name,
            &m.name,
            (start, end),
            window.level_dbfs,
            verdict,
            judge,
        );
        emit(FileWindow {
            timings_ms: Timings {
                mel: mel_ms,
                ..out.timings_ms
            },
            ..out
        })
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

/// A window of `name` from `start` to `end` seconds as `hark caption` prints it: what the
/// judge's `verdict` lets out (the front end's time is the caller's to fill in).
fn file_window(
    name: &str,
    model: &str,
    (start, end): (f32, f32),
    level_dbfs: f32,
    verdict: Verdict,
    judge: &Judge,
) -> FileWindow {
    let mut out = FileWindow {
        file: name.to_string(),
        start,
        end,
        level_dbfs,
        silent: true,
        text: None,
        model: model.to_string(),
        dropped: false,
        tags: Vec::new(),
        speech: None,
        score: None,
        tokens: Vec::new(),
        alternatives: Vec::new(),
        triggers: Vec::new(),
        phrases: Vec::new(),
        sounds: Vec::new(),
        embedding: None,
        timings_ms: Timings::default(),
    };
    match verdict {
        Verdict::Silent => {}
        Verdict::Dropped => {
            out.silent = false;
            out.dropped = true;
        }
        Verdict::Heard(heard) => {
            let round = |x: f32| (x * 1000.0).round() / 1000.0;
            let f = heard.findings;
            out.silent = false;
            out.text = Some(f.text);
            out.score = f.score;
            out.tags = f.tags;
            out.speech = heard.speech;
            out.alternatives = f.alternatives;
            out.tokens = heard.tokens;
            out.sounds = heard.sounds;
            out.embedding = heard.embedding;
            out.triggers = f
                .hits
                .into_iter()
                .map(|h| TriggerHit {
                    trigger: h.trigger,
                    phrase: h.phrase,
                    score: h.score,
                })
                .collect();
            out.phrases = judge
                .extra()
                .iter()
                .zip(heard.phrases)
                .map(|(phrase, (raw, trigger, in_caption))| PhraseScore {
                    phrase: phrase.clone(),
                    score: round(raw),
                    trigger_score: round(trigger),
                    in_caption,
                })
                .collect();
            let [encoder, decoding, phrases] = heard.timings;
            out.timings_ms = Timings {
                mel: 0.0,
                encoder,
                decoding,
                phrases,
            };
        }
    }
    out
}
