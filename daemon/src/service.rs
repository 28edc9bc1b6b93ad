//! `hark run`: builds the pipeline from the configuration, then runs the service loop —
//! captions to the sink (MQTT or stdout), stats, commands, signals, systemd notification
//! and a watchdog that only pings while the pipeline makes progress.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::model::Captioner;
use crate::pipeline::control::{Control, RateLimit};
use crate::pipeline::events::Event;
use crate::pipeline::queue::{Popped, Queue};
use crate::pipeline::{Pipeline, Setup};
use crate::sink::Sink;
use crate::sink::commands::{Command, Received};
use crate::sink::mqtt::{Entities, Mqtt};
use crate::sounds::{Sounds, Store};
use crate::stats::Counters;

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
/// The caption window and hop in frames: the configuration's `[window]` seconds, else the
/// bundle's (`hark run` and `hark caption --config` alike).
pub fn window_frames(cfg: &Config, model: &dyn Captioner) -> (usize, usize) {
    let m = &model.bundle().manifest;
    let (w, h) = m.window_frames();
    let w = cfg.window.seconds.map_or(w, |s| m.frames(s));
    let h = cfg.window.hop_seconds.map_or(h, |s| m.frames(s)).min(w);
    (w, h)
}

/// Where `hark run` is, in the manner of rumqttc's event loop: each turn of
/// [`Service::step`] waits for the next event and returns the phase that follows.
enum Phase {
    /// The pipeline runs; signals, `set` commands, stats and watchdog ticks are handled.
    Running,
    /// A signal stopped the pipeline: the window in flight and the captions already made are
    /// delivered until `deadline`; commands, stats and the watchdog carry on meanwhile.
    Draining { deadline: Instant },
    /// Finished, and why.
    Done(Ending),
}

enum Ending {
    /// The source ended and every caption was handed to the sink.
    SourceEnded,
    /// A signal stopped hark and the last captions were handed over before `deadline`
    /// (which also bounds the goodbye to the broker).
    Signalled { deadline: Instant },
    /// A signal stopped hark and `deadline` passed with a window still in flight.
    Abandoned { deadline: Instant },
    /// The sink failed (stdout closed, a payload that cannot be sent).
    SinkFailed(anyhow::Error),
}

async fn serve(cfg: Config) -> Result<()> {
    let mut service = Service::start(&cfg)?;
    let mut phase = Phase::Running;
    let ending = loop {
        phase = match phase {
            Phase::Done(ending) => break ending,
            phase => service.step(phase).await,
        };
    };
    service.finish(ending).await
}

/// The signals `hark run` handles.
struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    // Left unhandled these two would kill the daemon without a word (and without `offline`).
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot handle {name}"))
        };
        Ok(Self {
            term: on(SignalKind::terminate(), "SIGTERM")?,
            int: on(SignalKind::interrupt(), "SIGINT")?,
            quit: on(SignalKind::quit(), "SIGQUIT")?,
            hup: on(SignalKind::hangup(), "SIGHUP")?,
            usr1: on(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }
}

/// A running `hark run`: the pipeline, the task publishing its captions, the MQTT client
/// and what the loop needs between events.
struct Service {
    pipeline: Pipeline,
    publisher: tokio::task::JoinHandle<Result<()>>,
    mqtt: Option<Arc<Mqtt>>,
    commands: mpsc::Receiver<Received>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    device: String,
    model_name: String,
    source_rate: u32,
    signals: Signals,
    stats_tick: tokio::time::Interval,
    watchdog: Option<Duration>,
    watchdog_tick: tokio::time::Interval,
    progress: Watchdog,
    // A lost or returned microphone is published at once, not at the next stats interval.
    source_tick: tokio::time::Interval,
    source_lost: bool,
    // Answers on `error` are limited too: a flood of bad commands must not become a flood out.
    error_answers: RateLimit,
}

impl Service {
    /// Loads the model, opens the source, connects the sink, starts the pipeline and tells
    /// systemd it is ready.
    // Long on purpose: builds each component from the config in the order a frame meets
    // them (model, source, sink, pipeline), as one recipe.
    fn start(cfg: &Config) -> Result<Self> {
        let dir = crate::model::resolve_bundle(cfg.model.bundle.as_deref())?;
        let model = crate::model::load(&dir, cfg.model.backend)?;
        let bundle = model.bundle();
        let manifest = &bundle.manifest;
        let config_error = |e: &dyn std::fmt::Display| anyhow::anyhow!("config {e}");
        let params = manifest
            .decoding
            .with_overrides(&cfg.decoding, manifest.tokens.max_len)
            .map_err(|e| config_error(&e))?;
        cfg.tags.validate(bundle).map_err(|e| config_error(&e))?;
        let triggers = crate::pipeline::triggers::Triggers::build(&cfg.triggers, bundle)
            .map_err(|e| config_error(&e))?;
        let control = Arc::new(
            Control::new(params, manifest.tokens.max_len)
                .with_triggers(cfg.triggers.clone(), bundle.clone()),
        );
        let device = cfg.device_id();
        let model_name = manifest.name.clone();
        let window = window_frames(cfg, model.as_ref());
        let fps = manifest.frames_per_second();
        let source = crate::source::open(&cfg.source, manifest.frontend.sample_rate)?;
        let source_rate = source.sample_rate();
        log::info!(
            "listening to {} with model {model_name}; {:.2} s windows every {:.2} s; device id {device}",
            source.describe(),
            window.0 as f32 / fps,
            window.1 as f32 / fps
        );
        if cfg.privacy.speech != crate::config::SpeechPolicy::Caption
            && cfg.tags.speech(bundle, &[]).is_none()
        {
            log::warn!(
                "privacy.speech = {:?}, but model {model_name} has no speech tag: it cannot \
                 tell speech windows apart, so they are captioned like any other",
                cfg.privacy.speech
            );
        }
        let store = Store::of(&cfg.sounds)
            .map_err(|e| log::warn!("learned sounds: {e:#}"))
            .ok();
        let sounds = learned_sounds(store.as_ref(), bundle);
        let counters = Arc::new(Counters::default());
        let (command_tx, commands) = mpsc::channel::<Received>(16);
        let entities = Entities {
            binary_sensors: cfg.tags.binary_sensors.clone(),
            triggers: triggers.names(),
            sounds: sounds.names(),
            learn: bundle.sounds.is_some() && store.is_some(),
        };
        let mqtt = match &cfg.mqtt {
            Some(m) => Some(Arc::new(Mqtt::start(
                m,
                &device,
                &model_name,
                entities,
                command_tx,
            )?)),
            None => None,
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
                sounds,
                store,
            },
            outbox.clone(),
        )?;
        let sink = mqtt.clone().map_or(Sink::Stdout, Sink::Mqtt);
        let publisher = tokio::spawn(publish(outbox, sink));
        let signals = Signals::new()?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = sd_notify::watchdog_enabled();
        Ok(Self {
            pipeline,
            publisher,
            mqtt,
            commands,
            control,
            counters,
            device,
            model_name,
            source_rate,
            signals,
            stats_tick: tokio::time::interval_at(Instant::now() + stats_every, stats_every),
            watchdog,
            watchdog_tick: tokio::time::interval(
                watchdog.map_or(Duration::from_secs(3600), |w| w / 2),
            ),
            progress: Watchdog::new(),
            source_tick: tokio::time::interval(Duration::from_secs(1)),
            source_lost: false,
            error_answers: RateLimit::new(5, 1.0),
        })
    }

    /// Waits for the next event of `phase` and handles it; returns the next phase.
    async fn step(&mut self, phase: Phase) -> Phase {
        let deadline = match phase {
            Phase::Draining { deadline } => Some(deadline),
            _ => None,
        };
        tokio::select! {
            done = &mut self.publisher => match done {
                Ok(Err(e)) => {
                    self.pipeline.abandon();
                    Phase::Done(Ending::SinkFailed(e))
                }
                _ => match deadline {
                    Some(deadline) => Phase::Done(Ending::Signalled { deadline }),
                    None => Phase::Done(Ending::SourceEnded),
                },
            },
            _ = self.signals.term.recv() => self.stop("SIGTERM"),
            _ = self.signals.int.recv() => self.stop("SIGINT"),
            _ = self.signals.quit.recv() => self.stop("SIGQUIT"),
            _ = self.signals.hup.recv() => {
                log::warn!("SIGHUP ignored: the configuration is read at start; restart hark to apply changes");
                phase
            }
            _ = self.signals.usr1.recv() => {
                log::info!("stats: {}", serde_json::to_string(&self.snapshot()).unwrap_or_default());
                phase
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                log::warn!("shutdown: the current window did not finish in time; abandoned");
                self.publisher.abort();
                Phase::Done(Ending::Abandoned { deadline: deadline.unwrap_or_else(Instant::now) })
            }
            _ = self.source_tick.tick() => {
                let lost = self.counters.source_lost.load(Relaxed);
                if lost != self.source_lost {
                    self.source_lost = lost;
                    self.publish_stats();
                }
                phase
            }
            _ = self.stats_tick.tick() => {
                match &self.mqtt {
                    Some(_) => self.publish_stats(),
                    None => log::debug!("stats: {}", serde_json::to_string(&self.snapshot()).unwrap_or_default()),
                }
                phase
            }
            Some(raw) = self.commands.recv() => {
                self.command(&raw).await;
                phase
            }
            _ = self.watchdog_tick.tick(), if self.watchdog.is_some() => {
                let beats = (
                    self.counters.dsp_beats.load(Relaxed),
                    self.counters.inference_beats.load(Relaxed),
                );
                if self.progress.check(beats, self.pipeline.finished()) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                phase
            }
        }
    }

    /// A stopping signal: the pipeline abandons what it has not begun, and what is in
    /// flight has until shortly before the shutdown limit.
    fn stop(&self, why: &str) -> Phase {
        log::info!("{why}: stopping");
        self.pipeline.abandon();
        Phase::Draining {
            deadline: Instant::now() + SHUTDOWN - Duration::from_millis(300),
        }
    }

    /// Applies a `set` command and answers it: stats after a change, `error` (rate-limited)
    /// for a refusal; changed triggers are announced to Home Assistant.
    async fn command(&mut self, raw: &Received) {
        let Some(m) = self.mqtt.clone() else { return };
        match self.control.apply(raw, &self.counters) {
            Ok(cmd) => {
                if cmd != Command::Stats {
                    log::info!("command: {cmd:?}");
                }
                if matches!(cmd, Command::Triggers { .. }) {
                    let names: Vec<String> = self
                        .control
                        .triggers()
                        .into_iter()
                        .map(|t| t.name)
                        .collect();
                    if let Err(e) = m.set_triggers(&names).await {
                        log::warn!("cannot announce the triggers to Home Assistant: {e:#}");
                    }
                }
                m.stats(&self.snapshot());
            }
            Err(e) => {
                if self.error_answers.allow(std::time::Instant::now()) {
                    log::warn!("rejected command: {}", e.error);
                    let _ = m.error(&e).await;
                } else {
                    log::debug!("rejected command (not answered: too many): {}", e.error);
                }
            }
        }
    }

    fn snapshot(&self) -> crate::stats::Stats {
        let strategy = serde_json::to_value(self.control.params().strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.counters
            .snapshot(&self.device, self.source_rate, &self.model_name, &strategy)
    }

    fn publish_stats(&self) {
        if let Some(m) = &self.mqtt {
            m.stats(&self.snapshot());
        }
    }

    /// Logs the run's totals, delivers the last stats and `offline`, and turns the ending
    /// into the exit status.
    async fn finish(self, ending: Ending) -> Result<()> {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let stats = self.snapshot();
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
        let (signalled, deadline) = match ending {
            Ending::Signalled { deadline } | Ending::Abandoned { deadline } => (true, deadline),
            _ => (false, Instant::now() + SHUTDOWN),
        };
        let mut undelivered = 0;
        if let Some(m) = &self.mqtt {
            m.stats(&stats);
            undelivered = m.shutdown(deadline).await;
        }
        if let Ending::SinkFailed(e) = ending {
            return Err(e);
        }
        // After a signal the source thread may be blocked reading stdin: do not wait for it.
        if signalled {
            return Ok(());
        }
        // The source ended by itself: its error, if any, is the exit status.
        let pipeline = self.pipeline;
        tokio::task::spawn_blocking(move || pipeline.join())
            .await
            .context("pipeline thread")??;
        if undelivered > 0 {
            anyhow::bail!(
                "{undelivered} message(s) were not delivered: the broker was unreachable or \
                 refused the connection (see the warnings above)"
            );
        }
        Ok(())
    }
}

/// The learned sounds in `store` that fit the model; one that does not (another model, a
/// damaged file) is named in the log and the others still load.
fn learned_sounds(store: Option<&Store>, bundle: &crate::model::Bundle) -> Sounds {
    let Some(store) = store else {
        return Sounds::default();
    };
    let profiles = match store.all() {
        Ok(p) => p,
        Err(e) => {
            log::error!("learned sounds not loaded: {e:#}");
            return Sounds::default();
        }
    };
    let (sounds, problems) = Sounds::build(bundle, profiles);
    for p in problems {
        log::warn!("{p}");
    }
    if !sounds.is_empty() {
        log::info!("learned sounds: {}", sounds.names().join(", "));
    }
    sounds
}

/// Hands captions to the sink until the pipeline closes the outbox.
async fn publish(outbox: Arc<Queue<Event>>, sink: Sink) -> Result<()> {
    loop {
        let waiting = outbox.clone();
        let event =
            match tokio::task::spawn_blocking(move || waiting.pop(Duration::from_millis(500)))
                .await?
            {
                Popped::Item(event) => event,
                Popped::TimedOut => continue,
                Popped::Closed => break,
            };
        sink.send(&event).await?;
        match &event {
            Event::Caption(c) => log::info!("caption {}: {}", c.seq, c.text),
            Event::Trigger(t) => {
                log::info!("trigger {}: \"{}\" {:.2}", t.trigger, t.phrase, t.score)
            }
            Event::Sound(s) => log::info!("sound {}: {:.2}", s.sound, s.score),
            Event::Learned(_) => {}
            Event::LearnRefused(why) => log::warn!("{why}"),
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
