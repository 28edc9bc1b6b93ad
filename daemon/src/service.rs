//! `hark run`: builds the pipeline from the configuration, then runs the service loop —
//! captions to the sink (MQTT or stdout), stats, commands, signals, systemd notification
//! and a watchdog that only pings while the pipeline makes progress.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::model::Captioner;
use crate::pipeline::queue::Queue;
use crate::pipeline::{Pipeline, Setup};
use crate::sink::commands::{Command, Control, Received};
use crate::sink::events::Event;
use crate::sink::mqtt::Mqtt;
use crate::sink::stats::Counters;

/// Time allowed from SIGTERM to exit.
const SHUTDOWN: Duration = Duration::from_secs(2);

/// Runs until the source ends or a signal arrives.
pub fn run(cfg: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(cfg));
    // A stdout write blocked on a full pipe must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Decides each watchdog ping: only while both pipeline threads' heartbeats advance, so a
/// hung pipeline (not just a live process) gets the service restarted. Waiting for room in a
/// queue counts as a heartbeat (a slow sink is not a hang), and so does a finished pipeline
/// whose last captions are being delivered.
struct Watchdog {
    last: (u64, u64),
    stalled: bool,
}

impl Watchdog {
    fn new() -> Self {
        Self {
            last: (u64::MAX, u64::MAX),
            stalled: false,
        }
    }

    /// Whether to ping, given the DSP and inference heartbeat counters now and whether the
    /// pipeline has ended; logs when the pipeline stalls and when it resumes.
    fn check(&mut self, beats: (u64, u64), finished: bool) -> bool {
        let ok = finished || (beats.0 != self.last.0 && beats.1 != self.last.1);
        self.last = beats;
        if ok && self.stalled {
            log::info!("pipeline running again: watchdog pinged");
        } else if !ok && !self.stalled {
            log::warn!("pipeline stalled: the watchdog is not pinged while it is");
        }
        self.stalled = !ok;
        ok
    }
}

/// Window and hop in frames: the config's seconds, else the bundle's.
fn window_frames(cfg: &Config, model: &dyn Captioner) -> (usize, usize) {
    let m = &model.bundle().manifest;
    let (w, h) = m.window_frames();
    let w = cfg.window.seconds.map_or(w, |s| m.frames(s));
    let h = cfg.window.hop_seconds.map_or(h, |s| m.frames(s)).min(w);
    (w, h)
}

async fn serve(cfg: Config) -> Result<()> {
    let dir = crate::model::resolve_bundle(cfg.model.bundle.as_deref())?;
    let model = crate::model::load(&dir, cfg.model.backend)?;
    let manifest = &model.bundle().manifest;
    let params =
        crate::sink::commands::merge(&manifest.decoding, &cfg.decoding, manifest.tokens.max_len)
            .map_err(|e| anyhow::anyhow!("config {e}"))?;
    cfg.tags
        .validate(model.bundle())
        .map_err(|e| anyhow::anyhow!("config {e}"))?;
    let triggers = crate::pipeline::triggers::Triggers::build(&cfg.triggers, model.bundle())
        .map_err(|e| anyhow::anyhow!("config {e}"))?;
    let control = Arc::new(
        Control::new(params, manifest.tokens.max_len)
            .with_triggers(cfg.triggers.clone(), model.bundle().clone()),
    );
    let device = cfg.device_id();
    let model_name = manifest.name.clone();
    let window = window_frames(&cfg, model.as_ref());
    let fps = manifest.frames_per_second();
    let source = crate::source::open(&cfg.source, manifest.frontend.sample_rate)?;
    let source_rate = source.sample_rate();
    log::info!(
        "listening to {}; {:.2} s windows every {:.2} s; device id {device}",
        source.describe(),
        window.0 as f32 / fps,
        window.1 as f32 / fps
    );

    if cfg.privacy.speech != crate::config::SpeechPolicy::Caption
        && cfg.tags.speech(model.bundle(), &[]).is_none()
    {
        log::warn!(
            "privacy.speech = {:?}, but model {model_name} has no speech tag: it cannot tell \
             speech windows apart, so they are captioned like any other",
            cfg.privacy.speech
        );
    }
    let counters = Arc::new(Counters::default());
    let (command_tx, mut commands) = mpsc::channel::<Received>(16);
    let mqtt = match &cfg.mqtt {
        Some(m) => Some(Arc::new(Mqtt::start(
            m,
            &device,
            &model_name,
            &cfg.tags.binary_sensors,
            &triggers.names(),
            command_tx,
        )?)),
        None => {
            drop(command_tx);
            None
        }
    };
    let stats_every =
        Duration::from_secs_f32(cfg.mqtt.as_ref().map_or(60.0, |m| m.stats_interval_seconds));

    let outbox = Arc::new(Queue::new(cfg.pipeline.outbox, cfg.overflow()));
    let pipeline = Pipeline::start(
        Setup {
            model: model.clone(),
            source,
            live: cfg.source.is_live(),
            window,
            ring_seconds: cfg.pipeline.ring_seconds,
            queue: (cfg.pipeline.queue, cfg.overflow()),
            silence_dbfs: cfg.events.silence_dbfs,
            tags: cfg.tags.clone(),
            speech: cfg.privacy.speech,
            dedup_hold_seconds: cfg.events.dedup_hold_seconds,
            device: device.clone(),
            control: control.clone(),
            counters: counters.clone(),
        },
        outbox.clone(),
    )?;
    let mut publisher = tokio::spawn(publish(outbox, mqtt.clone()));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigquit = signal(SignalKind::quit()).context("cannot handle SIGQUIT")?;
    // Left unhandled these would kill the daemon without a word (and without `offline`).
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut sigusr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
    let mut stats_tick = tokio::time::interval_at(Instant::now() + stats_every, stats_every);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 2));
    let mut progress = Watchdog::new();
    // A lost or returned microphone is published at once, not at the next stats interval.
    let mut source_tick = tokio::time::interval(Duration::from_secs(1));
    let mut source_lost = false;
    let snapshot = || {
        let strategy = serde_json::to_value(control.params().strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        counters.snapshot(&device, source_rate, &model_name, &strategy)
    };

    // Answers on `error` are limited too: a flood of bad commands must not become a flood out.
    let mut error_answers = crate::sink::commands::RateLimit::new(5, 1.0);
    let mut deadline = None;
    let mut sink_failure = None;
    loop {
        tokio::select! {
            done = &mut publisher => {
                if let Ok(Err(e)) = done {
                    pipeline.abandon();
                    sink_failure = Some(e);
                }
                break;
            }
            _ = sigterm.recv() => deadline = Some(begin_shutdown(&pipeline, "SIGTERM")),
            _ = sigint.recv() => deadline = Some(begin_shutdown(&pipeline, "SIGINT")),
            _ = sigquit.recv() => deadline = Some(begin_shutdown(&pipeline, "SIGQUIT")),
            _ = sighup.recv() => log::warn!("SIGHUP ignored: the configuration is read at start; restart hark to apply changes"),
            _ = sigusr1.recv() => log::info!("stats: {}", serde_json::to_string(&snapshot()).unwrap_or_default()),
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                log::warn!("shutdown: the current window did not finish in time; abandoned");
                publisher.abort();
                break;
            }
            _ = source_tick.tick() => {
                let lost = counters.source_lost.load(Relaxed);
                if lost != source_lost {
                    source_lost = lost;
                    if let Some(m) = &mqtt {
                        m.stats(&snapshot());
                    }
                }
            }
            _ = stats_tick.tick() => match &mqtt {
                Some(m) => m.stats(&snapshot()),
                None => log::debug!("stats: {}", serde_json::to_string(&snapshot()).unwrap_or_default()),
            },
            Some(raw) = commands.recv() => {
                let Some(m) = &mqtt else { continue };
                match control.apply(&raw, &counters) {
                    Ok(cmd) => {
                        if cmd != Command::Stats {
                            log::info!("command: {cmd:?}");
                        }
                        if matches!(cmd, Command::Triggers { .. }) {
                            let names: Vec<String> =
                                control.triggers().into_iter().map(|t| t.name).collect();
                            if let Err(e) = m.set_triggers(&names).await {
                                log::warn!("cannot announce the triggers to Home Assistant: {e:#}");
                            }
                        }
                        m.stats(&snapshot());
                    }
                    Err(e) => {
                        if error_answers.allow(std::time::Instant::now()) {
                            log::warn!("rejected command: {}", e.error);
                            let _ = m.error(&e).await;
                        } else {
                            log::debug!("rejected command (not answered: too many): {}", e.error);
                        }
                    }
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let beats = (counters.dsp_beats.load(Relaxed), counters.inference_beats.load(Relaxed));
                if progress.check(beats, pipeline.finished()) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let stats = snapshot();
    log::info!(
        "{} window(s), {} caption(s) ({} dropped for a slow sink), {} skipped, {} silent, {} repeated, {} speech redacted, {} speech dropped, {} failed, {} ring overrun sample(s)",
        stats.windows,
        stats.captions,
        stats.dropped_captions,
        stats.skipped_windows,
        stats.silent_windows,
        stats.deduplicated,
        stats.speech_redacted,
        stats.speech_dropped,
        stats.failed_windows,
        stats.ring_overruns
    );
    let signalled = deadline.is_some();
    let deadline = deadline.unwrap_or_else(|| Instant::now() + SHUTDOWN);
    let mut undelivered = 0;
    if let Some(m) = &mqtt {
        m.stats(&stats);
        undelivered = m.shutdown(deadline).await;
    }
    if let Some(e) = sink_failure {
        return Err(e);
    }
    // After a signal the source thread may be blocked reading stdin: do not wait for it.
    if signalled {
        return Ok(());
    }
    // The source ended by itself: its error, if any, is the exit status.
    tokio::task::spawn_blocking(move || pipeline.join())
        .await
        .context("pipeline thread")??;
    if undelivered > 0 {
        anyhow::bail!(
            "{undelivered} message(s) were not delivered: the broker was unreachable or refused \
             the connection (see the warnings above)"
        );
    }
    Ok(())
}

fn begin_shutdown(pipeline: &Pipeline, why: &str) -> Instant {
    log::info!("{why}: stopping");
    pipeline.abandon();
    Instant::now() + SHUTDOWN - Duration::from_millis(300)
}

/// Hands captions to the sink until the pipeline closes the outbox.
async fn publish(outbox: Arc<Queue<Event>>, mqtt: Option<Arc<Mqtt>>) -> Result<()> {
    use std::io::Write as _;
    loop {
        let waiting = outbox.clone();
        let event =
            match tokio::task::spawn_blocking(move || waiting.pop(Duration::from_millis(500)))
                .await?
            {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(()) => break,
            };
        match (&mqtt, &event) {
            (Some(m), Event::Caption(c)) => m.caption(c).await?,
            (Some(m), Event::Trigger(t)) => m.trigger(&t.trigger, t).await?,
            (None, _) => {
                let mut line = match &event {
                    Event::Caption(c) => serde_json::to_vec(c)?,
                    Event::Trigger(t) => serde_json::to_vec(t)?,
                };
                line.push(b'\n');
                // Off the runtime: a reader that stops reading must not freeze signal handling.
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&line).and_then(|()| out.flush())
                })
                .await?
                .context("cannot write captions to stdout")?;
            }
        }
        match &event {
            Event::Caption(c) => log::info!("caption {}: {}", c.seq, c.text),
            Event::Trigger(t) => {
                log::info!("trigger {}: \"{}\" {:.2}", t.trigger, t.phrase, t.score)
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Watchdog;

    #[test]
    fn the_watchdog_pings_only_while_both_threads_progress_or_are_done() {
        let mut w = Watchdog::new();
        assert!(w.check((1, 1), false));
        assert!(w.check((5, 2), false));
        assert!(!w.check((9, 2), false), "inference stalled");
        assert!(!w.check((9, 7), false), "dsp stalled");
        assert!(w.check((10, 8), false));
        assert!(
            w.check((10, 8), true),
            "finished: delivering the last captions"
        );
    }
}
