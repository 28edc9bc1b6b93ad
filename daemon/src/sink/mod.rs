//! Where captions go and what comes back: the [`Sink`] (MQTT or stdout), the MQTT client
//! (`mqtt`, its reconnect rules in `reconnect`) and the `set` commands it receives
//! (`commands`). The events published are the
//! pipeline's (`pipeline::events`); the counters behind `stats` are everyone's (`crate::stats`).

pub mod commands;
pub mod mqtt;
pub mod reconnect;

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::pipeline::events::Event;

/// Where a run's events go: a broker, or standard output as JSON lines (no `[mqtt]`).
pub enum Sink {
    /// Each event on its topic (docs/MQTT.md).
    Mqtt(Arc<mqtt::Mqtt>),
    /// Each event's payload as one line.
    Stdout,
}

impl Sink {
    /// Publishes one event; waits while the broker's client queue is full or stdout's reader
    /// lags, which holds back the pipeline, whose bounded queues then drop and count.
    pub async fn send(&self, event: &Event) -> Result<()> {
        match self {
            Self::Mqtt(m) => match event {
                Event::Caption(c) => m.caption(c).await,
                Event::Trigger(t) => m.trigger(&t.trigger, t).await,
                Event::Sound(s) => m.sound(&s.sound, s).await,
                Event::Learned(l) => {
                    m.learned(l).await?;
                    if let Err(e) = m.set_sounds(&l.loaded).await {
                        log::warn!("cannot announce the learned sounds to Home Assistant: {e:#}");
                    }
                    Ok(())
                }
                Event::LearnRefused(why) => {
                    m.error(&commands::CommandError {
                        v: 1,
                        error: why.clone(),
                        command: "{\"cmd\":\"learn\"}".into(),
                    })
                    .await
                }
            },
            Self::Stdout => {
                let mut line = match event {
                    Event::Caption(c) => serde_json::to_vec(c)?,
                    Event::Trigger(t) => serde_json::to_vec(t)?,
                    Event::Sound(s) => serde_json::to_vec(s)?,
                    Event::Learned(l) => serde_json::to_vec(l)?,
                    Event::LearnRefused(why) => {
                        serde_json::to_vec(&serde_json::json!({"error": why}))?
                    }
                };
                line.push(b'\n');
                // Off the runtime: a reader that stops reading must not freeze signal handling.
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&line).and_then(|()| out.flush())
                })
                .await?
                .context("cannot write captions to stdout")
            }
        }
    }
}
