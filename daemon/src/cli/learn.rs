//! `hark learn` and `hark sounds`: teach hark a sound from recordings of it, and list, show,
//! tune or forget what it learned (docs/SOUNDS.md). The windows are judged as `hark caption`
//! judges them, so an example is exactly what the daemon would compare.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::caption::{Settings, caption_file};
use crate::config::Config;
use crate::sounds::{self, MAX_EXAMPLES, Sounds, Store};
use crate::source::audio_file::Stream;

/// The longest example file: an example is the sound itself, not an hour around it.
pub const MAX_FILE_SECONDS: f32 = 60.0;

fn store(cfg: &Config) -> Result<Store> {
    Store::of(&cfg.sounds)
}

/// Each non-silent window of `file` without speech: (embedding, where it came from).
fn examples_of(settings: &mut Settings, file: &Path) -> Result<Vec<(Vec<f32>, String)>> {
    let name = file.display().to_string();
    let stream = Stream::open(file)?;
    if let Some(s) = stream.seconds()
        && s > f64::from(MAX_FILE_SECONDS)
    {
        bail!(
            "{name} is {s:.0} s long; an example should be the sound itself, at most {MAX_FILE_SECONDS:.0} s: cut it (e.g. ffmpeg -ss START -t 10 -i {name} cut.wav)"
        );
    }
    let (mut out, mut speech, mut silent) = (Vec::new(), 0, 0);
    let model = settings.model.clone();
    caption_file(model.as_ref(), settings, stream, &name, |w| {
        if w.end > MAX_FILE_SECONDS + 10.0 {
            bail!("{name} is longer than {MAX_FILE_SECONDS:.0} s: cut it to the sound itself");
        }
        match w.embedding {
            Some(e) => out.push((e, format!("{name} {:.1}-{:.1} s", w.start, w.end))),
            None if w.silent => silent += 1,
            None => speech += 1,
        }
        Ok(())
    })?;
    if out.is_empty() && speech > 0 {
        bail!(
            "{name}: hark hears people speaking in it, and privacy.speech = \"{}\" keeps no trace of speech, learned sounds included (set privacy.speech = \"caption\" to learn it anyway)",
            format!("{:?}", settings.judge.speech).to_lowercase()
        );
    }
    if out.is_empty() {
        bail!(
            "{name}: every window is quieter than the silence threshold ({} dBFS): record the sound louder or lower events.silence_dbfs",
            settings.judge.silence_dbfs
        );
    }
    if silent + speech > 0 {
        log::info!("{name}: {silent} silent and {speech} speech window(s) left out");
    }
    Ok(out)
}

/// `hark learn NAME FILE…`: adds each file's windows as examples of NAME (a new sound, or
/// one learned before unless `replace`), optionally with the user's threshold.
pub fn learn(
    cfg: &Config,
    name: &str,
    files: &[PathBuf],
    replace: bool,
    threshold: Option<f32>,
) -> Result<()> {
    sounds::check_name(name)?;
    if let Some(t) = threshold
        && !(t > 0.0 && t < 1.0)
    {
        bail!("--threshold {t}: must be in (0, 1)");
    }
    let store = store(cfg)?;
    let mut settings = crate::cli::caption::settings(cfg, None, &[])?;
    let bundle = settings.model.bundle().clone();
    let reference = sounds::reference(&bundle)?;
    let mut examples = Vec::new();
    for file in files {
        examples.extend(examples_of(&mut settings, file)?);
    }
    let mut profile = store
        .add(name, &bundle, examples, replace)
        .map_err(|e| e.context("--replace starts it over"))?;
    if threshold.is_some() {
        profile.threshold = threshold;
        store.save(&profile)?;
    }
    let n = profile.examples.len();
    let fires = profile.threshold(reference);
    let how = if profile.threshold.is_some() {
        "yours"
    } else {
        "the model's default for this many examples"
    };
    println!(
        "learned {name}: {n} example(s), fires at a score of {fires:.2} ({how}); stored in {}",
        store.dir().join(format!("{name}.json")).display()
    );
    if n == MAX_EXAMPLES {
        println!("(a sound keeps its newest {MAX_EXAMPLES} examples)");
    }
    Ok(())
}

/// `hark sounds list`: every learned sound, one line each; damaged ones say why.
pub fn list(cfg: &Config) -> Result<()> {
    let store = store(cfg)?;
    let all = store.all()?;
    if all.is_empty() {
        println!(
            "no learned sounds in {} (hark learn NAME FILE… teaches one)",
            store.dir().display()
        );
    }
    for (name, p) in all {
        match p {
            Ok(p) => println!(
                "{name}: {} example(s), model {}{}",
                p.examples.len(),
                p.bundle,
                p.threshold
                    .map_or(String::new(), |t| format!(", threshold {t}"))
            ),
            Err(e) => println!("{name}: cannot be used: {e:#}"),
        }
    }
    Ok(())
}

/// `hark sounds show NAME`: what the sound holds and how it scores its own examples.
pub fn show(cfg: &Config, name: &str) -> Result<()> {
    let p = store(cfg)?.read(name)?;
    let model = crate::model::load(
        &crate::model::resolve_bundle(cfg.model.bundle.as_deref())?,
        cfg.model.backend,
    )?;
    let bundle = model.bundle();
    let reference = sounds::reference(bundle)?;
    p.check(bundle)?;
    let (sounds, _) = Sounds::build(bundle, vec![(name.to_string(), Ok(p.clone()))]);
    println!("{name}: learned with model {}", p.bundle);
    println!(
        "threshold: {:.2} ({})",
        p.threshold(reference),
        if p.threshold.is_some() {
            "set by you"
        } else {
            "the model's default"
        }
    );
    for (e, source) in p.examples.iter().zip(&p.sources) {
        println!("example: {source} (scores {:.2})", sounds.score(e)[0].score);
    }
    Ok(())
}

/// `hark sounds threshold NAME VALUE|default`.
pub fn set_threshold(cfg: &Config, name: &str, value: &str) -> Result<()> {
    let store = store(cfg)?;
    let mut p = store.read(name)?;
    p.threshold = match value {
        "default" => None,
        v => {
            let t: f32 = v
                .parse()
                .ok()
                .filter(|t: &f32| *t > 0.0 && *t < 1.0)
                .with_context(|| format!("threshold {v:?}: a number in (0, 1), or \"default\""))?;
            Some(t)
        }
    };
    store.save(&p)?;
    println!(
        "{name}: threshold {}",
        p.threshold
            .map_or("the model's default".into(), |t| t.to_string())
    );
    Ok(())
}

/// `hark sounds forget NAME`.
pub fn forget(cfg: &Config, name: &str) -> Result<()> {
    store(cfg)?.forget(name)?;
    println!("forgot {name}");
    Ok(())
}
