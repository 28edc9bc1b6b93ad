//! The MQTT side of `hark run` (rumqttc): topics of docs/MQTT.md, a retained `status` with a
//! last will, the `set` command subscription, and a shutdown that publishes `offline` and
//! waits for every QoS 1 acknowledgement. Home Assistant discovery is `discovery.rs`; the
//! event loop that connects and reconnects, `connection.rs` (its rules: `sink/reconnect.rs`).
//! Credentials are read here and never formatted into logs or errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, ClientError, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::MqttConfig;
use crate::sink::commands::Received;

mod connection;
mod discovery;
pub mod tls;

use connection::drive;
pub use discovery::Entities;
use discovery::discovery_texts;

/// The topics of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Captions.
    pub caption: String,
    /// `online` / `offline`, retained; the last will.
    pub status: String,
    /// Periodic counters.
    pub stats: String,
    /// Commands in.
    pub set: String,
    /// Answers to bad commands.
    pub error: String,
    /// Triggers: `<this>/<name>`.
    pub trigger: String,
    /// Learned sounds: `<this>/<name>`.
    pub sound: String,
    /// Answers to `learn` commands.
    pub learned: String,
    /// Home Assistant discovery prefix, if discovery is on.
    pub discovery: Option<String>,
}

impl Topics {
    fn new(cfg: &MqttConfig, device: &str) -> Self {
        let base = format!("{}/{device}", cfg.topic_prefix);
        Self {
            caption: format!("{base}/caption"),
            status: format!("{base}/status"),
            stats: format!("{base}/stats"),
            set: format!("{base}/set"),
            error: format!("{base}/error"),
            trigger: format!("{base}/trigger"),
            sound: format!("{base}/sound"),
            learned: format!("{base}/learned"),
            discovery: cfg.discovery.then(|| cfg.discovery_prefix.clone()),
        }
    }
}

/// The largest packet hark takes from the broker (or sends): rumqttc drops the connection on a
/// bigger one, and MQTT 3.1.1 cannot ask the broker to keep such messages back.
const MAX_PACKET: usize = 256 * 1024;
/// How long `set` stays unsubscribed after a message over MAX_PACKET arrived (it is hark's one
/// subscription): a retained one would come back and cut every new connection.
const SET_OFF_AFTER_OVERSIZE: Duration = Duration::from_secs(600);

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Acknowledgement accounting for a clean shutdown.
#[derive(Default)]
struct Acks {
    /// Publishes with QoS > 0 handed to the client.
    requested: AtomicU64,
    /// Of those, acknowledged by the broker.
    acked: AtomicU64,
}

/// A connected (or connecting) client.
pub struct Mqtt {
    client: AsyncClient,
    topics: Topics,
    qos: QoS,
    acks: Arc<Acks>,
    task: tokio::task::JoinHandle<()>,
    endpoint: String,
    /// What discovery is made of, to announce triggers added or removed at run time.
    device: String,
    model: String,
    entities: std::sync::Mutex<Entities>,
    on_connect: Arc<OnConnect>,
}

/// The password, from the file or variable the config names.
fn password(cfg: &MqttConfig) -> Result<Option<String>> {
    if let Some(path) = &cfg.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("mqtt.password_file = {}: cannot read it", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    if let Some(var) = &cfg.password_env {
        let value = std::env::var(var).with_context(|| {
            format!("mqtt.password_env = {var:?}: variable not set or not UTF-8")
        })?;
        return Ok(Some(value));
    }
    Ok(None)
}

impl Mqtt {
    /// Configures the client and starts its event loop; returns at once (the connection is
    /// made, and remade, in the background). Commands received on `set` go to `commands`.
    // Long on purpose: the client options (session, TLS, credentials, last will) set in one place.
    pub fn start(
        cfg: &MqttConfig,
        device: &str,
        model: &str,
        entities: Entities,
        commands: mpsc::Sender<Received>,
    ) -> Result<Self> {
        let topics = Topics::new(cfg, device);
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("hark-{device}"));
        let port = cfg.port();
        let mut opts = MqttOptions::new(client_id.clone(), cfg.host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_seconds));
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(&topics.status, "offline", qos(cfg.qos), true));
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), password(cfg)?.unwrap_or_default());
        }
        if let Some(tls) = &cfg.tls {
            tls::check(tls)?;
            // ring: one provider for the whole process (installing twice is harmless).
            let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
            let read = |key: &str, p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("{key} = {}: cannot read it", p.display()))
            };
            let ca = read("mqtt.tls.ca_file", &tls.ca_file)?;
            let client_auth = match (&tls.client_cert, &tls.client_key) {
                (Some(c), Some(k)) => Some((
                    read("mqtt.tls.client_cert", c)?,
                    read("mqtt.tls.client_key", k)?,
                )),
                _ => None,
            };
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        let (client, eventloop) = AsyncClient::new(opts, 256);
        let acks = Arc::new(Acks::default());
        let endpoint = format!(
            "{}://{}:{port}",
            if cfg.tls.is_some() { "mqtts" } else { "mqtt" },
            cfg.host
        );
        let on_connect = Arc::new(OnConnect {
            client: client.clone(),
            topics: topics.clone(),
            qos: qos(cfg.qos),
            discovery: std::sync::Mutex::new(discovery_texts(&topics, device, model, &entities)),
            acks: acks.clone(),
            set_off_until: std::sync::Mutex::new(None),
            online: AtomicBool::new(false),
        });
        let task = tokio::spawn(drive(
            eventloop,
            on_connect.clone(),
            commands,
            endpoint.clone(),
            client_id,
        ));
        Ok(Self {
            client,
            topics,
            qos: qos(cfg.qos),
            acks,
            task,
            endpoint,
            device: device.to_string(),
            model: model.to_string(),
            entities: std::sync::Mutex::new(entities),
            on_connect,
        })
    }

    /// Home Assistant learns of triggers added or removed by a command: a binary sensor's
    /// config for each new one, an empty retained config (which deletes the entity) for each
    /// one gone; later reconnections announce the new list.
    pub async fn set_triggers(&self, names: &[String]) -> Result<()> {
        self.announce(|e| e.triggers = names.to_vec()).await
    }

    /// The same for learned sounds, after a `learn` command.
    pub async fn set_sounds(&self, names: &[String]) -> Result<()> {
        self.announce(|e| e.sounds = names.to_vec()).await
    }

    /// Announces the entities after `change`: new documents, and empty ones for those gone.
    async fn announce(&self, change: impl FnOnce(&mut Entities)) -> Result<()> {
        let next = {
            let mut entities = self.entities.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut entities);
            discovery_texts(&self.topics, &self.device, &self.model, &entities)
        };
        let changes: Vec<(String, String)> = {
            let mut current = self
                .on_connect
                .discovery
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let gone = current
                .iter()
                .filter(|(t, _)| !next.iter().any(|(n, _)| n == t))
                .map(|(t, _)| (t.clone(), String::new()));
            let new = next.iter().filter(|e| !current.contains(e)).cloned();
            let changes = gone.chain(new).collect();
            *current = next;
            changes
        };
        for (topic, body) in changes {
            self.publish(&topic, self.qos, true, body.into_bytes())
                .await?;
        }
        Ok(())
    }

    /// Publishes a caption; waits while the client's queue is full (the broker is away),
    /// which holds back the pipeline, whose bounded queues then drop and count.
    pub async fn caption(&self, payload: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(payload)?;
        self.publish(&self.topics.caption, self.qos, false, body)
            .await
    }

    async fn publish(&self, topic: &str, qos: QoS, retain: bool, body: Vec<u8>) -> Result<()> {
        if qos != QoS::AtMostOnce {
            self.acks.requested.fetch_add(1, Relaxed);
        }
        self.client
            .publish(topic, qos, retain, body)
            .await
            .map_err(|e| anyhow::anyhow!("MQTT client stopped: {e}"))
    }

    /// Publishes stats (QoS 0; skipped while disconnected or when the client's queue is
    /// full: each carries running totals, so the next one says all a skipped one would).
    pub fn stats(&self, payload: &impl Serialize) {
        if !self.on_connect.online.load(Relaxed) {
            return;
        }
        if let Ok(body) = serde_json::to_vec(payload) {
            let _ = self
                .client
                .try_publish(&self.topics.stats, QoS::AtMostOnce, false, body);
        }
    }

    /// Publishes a fired trigger on `…/trigger/<name>`, like a caption (same QoS, waits
    /// while the client's queue is full).
    pub async fn trigger(&self, name: &str, payload: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(payload)?;
        let topic = format!("{}/{name}", self.topics.trigger);
        self.publish(&topic, self.qos, false, body).await
    }

    /// Publishes a learned sound heard on `sound/<name>`.
    pub async fn sound(&self, name: &str, payload: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(payload)?;
        let topic = format!("{}/{name}", self.topics.sound);
        self.publish(&topic, self.qos, false, body).await
    }

    /// Answers a `learn` command on `learned`.
    pub async fn learned(&self, payload: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(payload)?;
        self.publish(&self.topics.learned, self.qos, false, body)
            .await
    }

    /// Answers a bad command on the error topic.
    pub async fn error(&self, payload: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(payload)?;
        self.publish(&self.topics.error, self.qos, false, body)
            .await
    }

    /// Publishes `offline`, waits until every QoS > 0 message is acknowledged, disconnects.
    /// Gives up at `deadline`; returns how many messages the broker did not acknowledge.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) -> u64 {
        let flush = async {
            self.publish(&self.topics.status, self.qos, true, b"offline".to_vec())
                .await?;
            while self.acks.acked.load(Relaxed) < self.acks.requested.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.client.disconnect().await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout_at(deadline, flush).await {
            Ok(Ok(())) => {
                // The event loop ends once the DISCONNECT is written.
                while !self.task.is_finished() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok(Err(e)) => log::warn!("MQTT shutdown: {e:#}"),
            Err(_) => {}
        }
        let missing = self
            .acks
            .requested
            .load(Relaxed)
            .saturating_sub(self.acks.acked.load(Relaxed));
        if missing > 0 {
            log::warn!(
                "{}: {missing} message(s) not acknowledged by the broker at shutdown",
                self.endpoint
            );
        }
        missing
    }
}

/// What to (re)do on every connection: status, discovery, subscription.
struct OnConnect {
    client: AsyncClient,
    topics: Topics,
    qos: QoS,
    /// Discovery configs: (topic, payload).
    discovery: std::sync::Mutex<Vec<(String, String)>>,
    acks: Arc<Acks>,
    /// Until when `set` stays unsubscribed (`set_off`).
    set_off_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Connected now: stats made while not are skipped, the next one after reconnecting
    /// carries their counts (they are totals), instead of a stale burst at reconnect.
    online: AtomicBool,
}

impl OnConnect {
    /// Subscribes to `set` and publishes `online` and discovery. Run as a task of its own, not
    /// inside the event loop: after an outage the client queue may be full of captions, and
    /// these requests must wait for room (which only the polling event loop makes) rather
    /// than fail and leave hark deaf and invisible until the next reconnect.
    async fn announce(self: Arc<Self>) -> Result<(), ClientError> {
        let set_off = *self.set_off_until.lock().unwrap_or_else(|e| e.into_inner());
        if set_off.is_none_or(|until| until <= tokio::time::Instant::now()) {
            self.client
                .subscribe(&self.topics.set, QoS::AtLeastOnce)
                .await?;
        }
        let discovery = self
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let announcements =
            std::iter::once((self.topics.status.clone(), "online".to_string())).chain(discovery);
        for (topic, body) in announcements {
            if self.qos != QoS::AtMostOnce {
                self.acks.requested.fetch_add(1, Relaxed);
            }
            self.client
                .publish(topic, self.qos, true, body.into_bytes())
                .await?;
        }
        Ok(())
    }

    /// A message over MAX_PACKET arrived: `set` is left unsubscribed for `time` (then
    /// subscribed again), so that a retained one cannot cut every connection.
    fn set_off(self: &Arc<Self>, time: Duration) {
        let set = &self.topics.set;
        log::error!(
            "MQTT: the broker sent a message over {} KB, so rumqttc dropped the connection. \
             hark subscribes only to {set}: a command that big is probably retained there \
             (clear it: mosquitto_pub -r -n -t {set}). `set` commands are off for {} minutes \
             so that it cannot cut every connection; limit the broker's max_packet_size to \
             {MAX_PACKET} if untrusted clients can publish",
            MAX_PACKET / 1024,
            time.as_secs() / 60
        );
        *self.set_off_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::time::Instant::now() + time);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            log::info!("MQTT: `set` commands are on again");
            if let Err(e) = me.client.subscribe(&me.topics.set, QoS::AtLeastOnce).await {
                log::warn!("MQTT: cannot subscribe to {}: {e}", me.topics.set);
            }
        });
    }
}
