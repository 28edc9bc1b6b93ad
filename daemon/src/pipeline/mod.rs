//! The capture-to-caption pipeline of `hark run`, one thread per stage:
//!
//! ```text
//! source thread / cpal callback ─▶ capture ring (SPSC) ─▶ DSP thread: resample → log-mel → windows
//!     ─▶ bounded window queue (drop-oldest or block) ─▶ inference thread: pause, the window's
//!     judgement (judge.rs: silence gate → encoder → decoding → tags → triggers → speech gate),
//!     de-duplication ─▶ bounded outbox (drop-oldest or block) ─▶ the sink (MQTT or stdout, in
//!     service.rs)
//! ```
//!
//! Every buffer is bounded, and neither queue lets a slow consumer stall the thread before it
//! on live audio: a sink that stops taking captions costs the oldest captions (counted), not
//! the microphone's audio or the watchdog's pings. Stopping is two-level: `stop` abandons
//! work in flight (a signal); the end of the source drains everything already captured and
//! then ends the pipeline.

pub mod control;
pub mod events;
pub mod judge;
pub mod privacy;
pub mod queue;
pub mod triggers;
pub mod window;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use ringbuf::traits::{Consumer, Observer, Split};
use ringbuf::{HeapCons, HeapRb};

use crate::config::Overflow;
use crate::config::SpeechPolicy;
use crate::config::TagConfig;
use crate::model::Captioner;
use crate::pipeline::control::Control;
use crate::pipeline::control::{LearnRequest, MAX_LEARN_WINDOWS};
use crate::pipeline::events::{Caption, Dedup, Event};
use crate::pipeline::judge::{Heard, Judge, Verdict};
use crate::pipeline::privacy::Findings;
use crate::pipeline::queue::{Popped, Pushed, Queue};
use crate::pipeline::triggers::{Fired, Triggers};
use crate::pipeline::window::{Window, Windower};
use crate::sounds::{Detected, Learned, Sounds, Store};
use crate::source::{RingWriter, Source};
use crate::stats::Counters;

/// Everything the pipeline is built from.
pub struct Setup {
    /// The loaded model.
    pub model: Arc<dyn Captioner>,
    /// The opened source.
    pub source: Box<dyn Source>,
    /// Live source: windows are stamped with the wall clock when they complete; replayed
    /// audio is stamped from its start time plus its position.
    pub live: bool,
    /// Window and hop, frames.
    pub window: (usize, usize),
    /// Capture ring capacity, seconds.
    pub ring_seconds: f32,
    /// Window queue length and policy.
    pub queue: (usize, Overflow),
    /// Silence threshold, dBFS.
    pub silence_dbfs: f32,
    /// De-duplication hold, seconds.
    pub dedup_hold_seconds: f32,
    /// Which tags are published.
    pub tags: TagConfig,
    /// What speech windows publish.
    pub speech: SpeechPolicy,
    /// Device id for the payloads.
    pub device: String,
    /// Pause state and decoding parameters.
    pub control: Arc<Control>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Learned sounds scored on every window.
    pub sounds: Sounds,
    /// Where learned sounds are kept (a `learn` command adds to it); None: nowhere.
    pub store: Option<Store>,
}

/// A window on its way to inference, stamped with when it was complete.
struct Job {
    window: Window,
    ready: Instant,
    start: SystemTime,
    end: SystemTime,
    end_s: f64,
}

/// A running pipeline.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    queue: Arc<Queue<Job>>,
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Pipeline {
    /// Starts the threads; captions arrive in `outbox` until the source ends or `abandon`,
    /// and then it is closed.
    pub fn start(setup: Setup, outbox: Arc<Queue<Event>>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
        let queue = Arc::new(Queue::new(setup.queue.0, setup.queue.1));
        let source_rate = setup.source.sample_rate();
        let capacity = ((setup.ring_seconds * source_rate as f32) as usize).max(1024);
        let (producer, consumer) = HeapRb::<f32>::new(capacity).split();
        let source_done = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();

        let source = setup.source;
        let writer = RingWriter::new(producer, setup.counters.clone());
        threads.push(spawn("hark-source", {
            let (stop, done, failure) = (stop.clone(), source_done.clone(), failure.clone());
            move || {
                if let Err(e) = source.capture(writer, &stop) {
                    fail(&failure, e);
                }
                done.store(true, Relaxed);
            }
        })?);

        let dsp = Dsp {
            frontend: setup.model.bundle().manifest.frontend.clone(),
            source_rate,
            window: setup.window,
            live: setup.live,
            counters: setup.counters.clone(),
        };
        threads.push(spawn("hark-dsp", {
            let (stop, queue, failure) = (stop.clone(), queue.clone(), failure.clone());
            move || {
                if let Err(e) = dsp.make_windows(consumer, &source_done, &stop, &queue) {
                    fail(&failure, e);
                }
                queue.close();
            }
        })?);

        let mut judge = Judge::new(
            setup.silence_dbfs,
            setup.tags,
            setup.speech,
            Triggers::default(),
            Vec::new(),
        );
        judge.set_sounds(setup.sounds);
        let inference = Inference {
            store: setup.store,
            recent: VecDeque::new(),
            model: setup.model,
            control: setup.control,
            counters: setup.counters,
            dedup: Dedup::new(f64::from(setup.dedup_hold_seconds)),
            judge,
            triggers_seen: None,
            device: setup.device,
            seq: 0,
            dropping: 0,
        };
        threads.push(spawn("hark-inference", {
            let (queue, stop) = (queue.clone(), stop.clone());
            move || {
                inference.caption_windows(&queue, &outbox, &stop);
                outbox.close();
            }
        })?);
        Ok(Self {
            stop,
            queue,
            threads,
            failure,
        })
    }

    /// Abandons work in flight: the source stops, queued windows are dropped; the window
    /// being captioned, if any, is finished.
    pub fn abandon(&self) {
        self.stop.store(true, Relaxed);
        let dropped = self.queue.clear();
        if dropped > 0 {
            log::info!("shutdown: {dropped} queued window(s) abandoned");
        }
        self.queue.close();
    }

    /// Whether every thread has ended (the source ended and everything was captioned, or
    /// the pipeline was abandoned).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the threads (after the outbox closed); the source's or DSP's
    /// error, if one ended the pipeline.
    pub fn join(self) -> Result<()> {
        for t in self.threads {
            let _ = t.join();
        }
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .with_context(|| format!("cannot start thread {name}"))
}

fn fail(slot: &Mutex<Option<anyhow::Error>>, e: anyhow::Error) {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(e);
}

/// The DSP thread: ring → resampler → streaming log-mel → window assembler → queue.
struct Dsp {
    frontend: dsp::FrontendConfig,
    source_rate: u32,
    window: (usize, usize),
    live: bool,
    counters: Arc<Counters>,
}

impl Dsp {
    fn make_windows(
        self,
        mut ring: HeapCons<f32>,
        source_done: &AtomicBool,
        stop: &AtomicBool,
        queue: &Queue<Job>,
    ) -> Result<()> {
        let fe = &self.frontend;
        let mut windower = Windower::new(fe, self.source_rate, self.window)?;
        let frame_s = f64::from(fe.hop_length as u32) / f64::from(fe.sample_rate);
        let epoch = SystemTime::now();
        let mut chunk = vec![0.0f32; 4096];
        // Windows completed by a chunk wait here for the queue.
        let mut ready: Vec<Window> = Vec::with_capacity(4);
        let mut finished = false;
        while !finished {
            self.counters.dsp_beats.fetch_add(1, Relaxed);
            if stop.load(Relaxed) {
                return Ok(());
            }
            let n = ring.pop_slice(&mut chunk);
            if n > 0 {
                windower.push(&chunk[..n], &mut ready);
            } else if source_done.load(Relaxed) && ring.is_empty() {
                windower.finish(&mut ready);
                finished = true;
            } else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for window in ready.drain(..) {
                let start_s = window.start_frame as f64 * frame_s;
                let end_s = start_s + window.frames as f64 * frame_s;
                let span = Duration::from_secs_f64(end_s - start_s);
                let end = if self.live {
                    SystemTime::now()
                } else {
                    epoch + Duration::from_secs_f64(end_s)
                };
                self.counters.windows.fetch_add(1, Relaxed);
                let job = Job {
                    window,
                    ready: Instant::now(),
                    start: end.checked_sub(span).unwrap_or(end),
                    end,
                    end_s,
                };
                match queue.push(job, stop, &self.counters.dsp_beats) {
                    Pushed::Queued => {}
                    Pushed::DroppedOldest => {
                        self.counters.skipped_windows.fetch_add(1, Relaxed);
                        log::debug!("inference is behind: dropped the oldest queued window");
                    }
                    Pushed::Refused => return Ok(()),
                }
                self.counters
                    .queue_depth
                    .store(queue.depth() as u64, Relaxed);
            }
        }
        let sanitized = windower.sanitized_samples();
        if sanitized > 0 {
            log::warn!("{sanitized} non-finite input sample(s) were replaced by silence");
        }
        Ok(())
    }
}

/// The inference thread: window → caption event.
struct Inference {
    model: Arc<dyn Captioner>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    dedup: Dedup,
    /// How a window is judged: the same as `hark caption`.
    judge: Judge,
    /// The change count of the control's triggers these were built from.
    triggers_seen: Option<u64>,
    device: String,
    seq: u64,
    /// Captions dropped from the full outbox since the sink last took one (logged once).
    dropping: u64,
    /// Learned sounds' folder.
    store: Option<Store>,
    /// The latest non-silent windows, for a `learn` command: each one's sound embedding
    /// (None for speech, which is never learned unless privacy.speech = "caption"), start and
    /// end. No audio.
    recent: VecDeque<(Option<Vec<f32>>, SystemTime, SystemTime)>,
}

impl Inference {
    fn caption_windows(mut self, queue: &Queue<Job>, outbox: &Queue<Event>, stop: &AtomicBool) {
        loop {
            self.counters.inference_beats.fetch_add(1, Relaxed);
            let learned = self.control.take_learn().map(|r| self.learn(&r));
            let events = match queue.pop(Duration::from_millis(200)) {
                Popped::Item(job) => {
                    self.counters
                        .queue_depth
                        .store(queue.depth() as u64, Relaxed);
                    self.caption(job)
                }
                Popped::TimedOut => Vec::new(),
                Popped::Closed => return,
            };
            for event in learned.into_iter().chain(events) {
                let is_caption = matches!(event, Event::Caption(_));
                match outbox.push(event, stop, &self.counters.inference_beats) {
                    Pushed::Queued if self.dropping > 0 => {
                        log::info!(
                            "the sink takes captions again; {} were dropped meanwhile",
                            self.dropping
                        );
                        self.dropping = 0;
                    }
                    Pushed::Queued => {}
                    Pushed::DroppedOldest => {
                        if self.dropping == 0 {
                            log::warn!(
                                "the sink is not taking captions (broker away and its queue \
                                 full, or stdout not read): dropping the oldest, counted as \
                                 dropped_captions"
                            );
                        }
                        self.dropping += 1;
                        self.counters.dropped_captions.fetch_add(1, Relaxed);
                    }
                    Pushed::Refused => return,
                }
                if is_caption {
                    self.counters.captions.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Keeps a non-silent window's embedding for a `learn` command.
    fn remember(&mut self, embedding: Option<Vec<f32>>, job: &Job) {
        if self.recent.len() == MAX_LEARN_WINDOWS {
            self.recent.pop_front();
        }
        self.recent.push_back((embedding, job.start, job.end));
    }

    /// Carries out a `learn` command: the latest windows without speech become examples of
    /// the sound, saved, and every learned sound is loaded again.
    fn learn(&mut self, req: &LearnRequest) -> Event {
        match self.learn_recent(req) {
            Ok(answer) => {
                log::info!("learned {}: {} example(s)", answer.sound, answer.examples);
                Event::Learned(answer)
            }
            Err(e) => Event::LearnRefused(format!("learn {}: {e:#}", req.name)),
        }
    }

    fn learn_recent(&mut self, req: &LearnRequest) -> anyhow::Result<Learned> {
        let store = self
            .store
            .as_ref()
            .context("no folder for learned sounds (set sounds.dir)")?;
        let bundle = self.model.bundle();
        let reference = crate::sounds::reference(bundle)?;
        if self.recent.len() < req.windows {
            anyhow::bail!(
                "asked for {} window(s), but only {} non-silent were heard since the start",
                req.windows,
                self.recent.len()
            );
        }
        let taken: Vec<_> = self
            .recent
            .iter()
            .skip(self.recent.len() - req.windows)
            .collect();
        let (start, end) = (taken[0].1, taken[taken.len() - 1].2);
        let mut examples = Vec::new();
        for (e, s, _) in &taken {
            let e = e.clone().context(
                "hark heard people speaking in the window(s) asked for, and privacy.speech keeps \
                 no trace of speech, learned sounds included: nothing was stored",
            )?;
            examples.push((e, format!("the window from {}", events::rfc3339(*s))));
        }
        let profile = store.add(&req.name, bundle, examples, false)?;
        let (sounds, problems) = Sounds::build(bundle, store.all()?);
        for p in problems {
            log::warn!("{p}");
        }
        let loaded = sounds.names();
        self.judge.set_sounds(sounds);
        Ok(Learned {
            v: 1,
            sound: profile.name.clone(),
            examples: profile.examples.len(),
            added: req.windows,
            threshold: profile.threshold(reference),
            start: events::rfc3339(start),
            end: events::rfc3339(end),
            loaded,
        })
    }

    /// Takes up the triggers in effect when a `triggers` command changed them (they were
    /// checked against the model when set).
    fn refresh_triggers(&mut self) {
        let changes = self.control.trigger_changes();
        if self.triggers_seen == Some(changes) {
            return;
        }
        match Triggers::build(&self.control.triggers(), self.model.bundle()) {
            Ok(triggers) => {
                let names = triggers.names();
                // At start without triggers there is nothing to say; after a change, even "none".
                if !names.is_empty() || self.triggers_seen.is_some() {
                    let names = if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    };
                    log::info!("triggers: {names}");
                }
                self.judge.set_triggers(triggers);
            }
            Err(e) => log::error!("triggers not changed: {e}"),
        }
        self.triggers_seen = Some(changes);
    }

    /// A window's caption and fired triggers (none for a paused, silent, failed or dropped
    /// window; triggers without the caption when it repeats the last one).
    fn caption(&mut self, job: Job) -> Vec<Event> {
        self.refresh_triggers();
        let c = &self.counters;
        let w = &job.window;
        if c.paused.load(Relaxed) {
            c.paused_windows.fetch_add(1, Relaxed);
            return Vec::new();
        }
        let t0 = Instant::now();
        let params = self.control.params();
        let verdict =
            self.judge
                .judge(self.model.as_ref(), &params, &w.mel, w.frames, w.level_dbfs);
        let heard = match verdict {
            Ok(Verdict::Heard(heard)) => heard,
            Ok(Verdict::Silent) => {
                c.silent_windows.fetch_add(1, Relaxed);
                log::debug!("window {}: silence ({:.1} dBFS)", w.index, w.level_dbfs);
                return Vec::new();
            }
            Ok(Verdict::Dropped) => {
                self.remember(None, &job);
                let c = &self.counters;
                c.speech_dropped.fetch_add(1, Relaxed);
                log::debug!("window {}: speech, not published (privacy.speech)", w.index);
                return Vec::new();
            }
            Err(e) => {
                c.failed_windows.fetch_add(1, Relaxed);
                log::error!(
                    "window {} ({} frames) not captioned: {e:#}",
                    w.index,
                    w.frames
                );
                return Vec::new();
            }
        };
        let fps = self.model.bundle().manifest.frames_per_second();
        c.inference_us
            .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
        c.audio_us
            .fetch_add((w.frames as f64 / f64::from(fps) * 1e6) as u64, Relaxed);
        if heard.redacted {
            c.speech_redacted.fetch_add(1, Relaxed);
        }
        self.events(&job, *heard)
    }

    /// The caption and fired-trigger events of a heard window (the caption left out when it
    /// repeats the last one within the de-duplication hold).
    fn events(&mut self, job: &Job, heard: Heard) -> Vec<Event> {
        self.remember(heard.embedding, job);
        let (c, w) = (&self.counters, &job.window);
        let speech = heard.speech;
        let Findings {
            text,
            score,
            alternatives,
            tags,
            hits,
        } = heard.findings;
        let (start, end) = (events::rfc3339(job.start), events::rfc3339(job.end));
        let triggers = hits.into_iter().map(|hit| {
            Event::Trigger(Fired {
                v: 1,
                trigger: hit.trigger,
                phrase: hit.phrase,
                score: hit.score,
                caption: text.clone(),
                start: start.clone(),
                end: end.clone(),
            })
        });
        let sounds = heard.sounds.into_iter().filter(|s| s.fired).map(|s| {
            Event::Sound(Detected {
                v: 1,
                sound: s.sound,
                score: s.score,
                threshold: s.threshold,
                caption: text.clone(),
                start: start.clone(),
                end: end.clone(),
            })
        });
        let mut events: Vec<Event> = triggers.chain(sounds).collect();
        if !self.dedup.admit(&text, job.end_s) {
            c.deduplicated.fetch_add(1, Relaxed);
            log::debug!(
                "window {}: repeat of the last caption, not published",
                w.index
            );
            return events;
        }
        self.seq += 1;
        events.insert(
            0,
            Event::Caption(Caption {
                v: events::VERSION,
                seq: self.seq,
                device: self.device.clone(),
                speech,
                text,
                start,
                end,
                score,
                alternatives,
                tags,
                level_dbfs: w.level_dbfs,
                model: self.model.bundle().manifest.name.clone(),
                latency_ms: job.ready.elapsed().as_secs_f64() * 1e3,
            }),
        );
        events
    }
}
