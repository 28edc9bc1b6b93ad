//! The MQTT side of `hark run` (rumqttc): topics of docs/MQTT.md, a retained `status` with a
//! last will, Home Assistant discovery, the `set` command subscription, reconnection with
//! backoff, and a shutdown that publishes `offline` and waits for every QoS 1 acknowledgement.
//! Credentials are read here and never formatted into logs or errors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Request, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::MqttConfig;
use crate::sink::commands::Received;
use crate::sink::reconnect::{Failure, Reconnect, SHORT, TAKEOVER_AFTER, jitter};

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
            discovery: cfg.discovery.then(|| cfg.discovery_prefix.clone()),
        }
    }
}

/// Home Assistant MQTT discovery, as (config topic, payload) pairs: a sensor whose state is
/// the latest caption (the rest of the payload as attributes), a sensor listing its tags, and
/// a binary sensor per label in `tags.binary_sensors`, on while captions carry that tag and
/// off `TAG_OFF_DELAY` seconds after the last one.
// Long on purpose: the Home Assistant discovery documents, one literal per entity.
fn discovery(
    topics: &Topics,
    device: &str,
    model: &str,
    binary_sensors: &[String],
    triggers: &[String],
) -> Vec<(String, serde_json::Value)> {
    let Some(prefix) = &topics.discovery else {
        return Vec::new();
    };
    let common = serde_json::json!({
        "state_topic": topics.caption,
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [format!("hark_{device}")],
            "name": format!("hark {device}"),
            "manufacturer": "hark",
            "model": model,
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        // What made the discovery documents (Home Assistant shows it and logs it).
        "origin": {"name": "hark", "sw_version": env!("CARGO_PKG_VERSION")},
    });
    let with = |extra: serde_json::Value| {
        let mut v = common.clone();
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    let mut out = vec![
        (
            format!("{prefix}/sensor/hark_{device}/caption/config"),
            with(serde_json::json!({
                "name": "Caption",
                "unique_id": format!("hark_{device}_caption"),
                "value_template": "{{ value_json.text[:255] }}",
                "json_attributes_topic": topics.caption,
                "icon": "mdi:ear-hearing",
            })),
        ),
        (
            format!("{prefix}/sensor/hark_{device}/tags/config"),
            with(serde_json::json!({
                "name": "Tags",
                "unique_id": format!("hark_{device}_tags"),
                "value_template":
                    "{{ (value_json.tags | map(attribute='label') | join(', '))[:255] }}",
                "icon": "mdi:tag-multiple",
            })),
        ),
    ];
    for label in binary_sensors {
        let slug: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        // The label goes into a Jinja string literal: escape what would end it.
        let quoted = label.replace('\\', "\\\\").replace('\'', "\\'");
        out.push((
            format!("{prefix}/binary_sensor/hark_{device}/tag_{slug}/config"),
            with(serde_json::json!({
                "name": format!("Heard {label}"),
                "unique_id": format!("hark_{device}_tag_{slug}"),
                "value_template": format!(
                    "{{{{ 'ON' if value_json.tags | selectattr('label', 'equalto', '{quoted}') | list | count > 0 else 'OFF' }}}}"
                ),
                "off_delay": TAG_OFF_DELAY,
                "icon": "mdi:ear-hearing",
            })),
        ));
    }
    out.extend(diagnostics(topics, device, &with));
    // Per trigger an event entity (HA's kind for a momentary happening, like a doorbell) and a
    // binary sensor, on with each message on its topic and off TAG_OFF_DELAY seconds after the
    // last, for automations on a state (names are already topic-safe: a-z, 0-9, _ and -).
    for name in triggers {
        out.push((
            format!("{prefix}/event/hark_{device}/trigger_{name}/config"),
            with(serde_json::json!({
                "name": format!("Trigger {name}"),
                "unique_id": format!("hark_{device}_trigger_{name}_event"),
                "state_topic": format!("{}/{name}", topics.trigger),
                "event_types": ["fired"],
                "value_template": "{{ {'event_type': 'fired', 'phrase': value_json.phrase, \
                    'score': value_json.score, 'caption': value_json.caption} | to_json }}",
                "icon": "mdi:bell-ring",
            })),
        ));
        out.push((
            format!("{prefix}/binary_sensor/hark_{device}/trigger_{name}/config"),
            with(serde_json::json!({
                "name": format!("Trigger {name}"),
                "unique_id": format!("hark_{device}_trigger_{name}"),
                "state_topic": format!("{}/{name}", topics.trigger),
                "value_template": "ON",
                "payload_on": "ON",
                "off_delay": TAG_OFF_DELAY,
                "json_attributes_topic": format!("{}/{name}", topics.trigger),
                "icon": "mdi:bell-ring",
            })),
        ));
    }
    out
}

/// Diagnostic entities (HA lists them apart from the controls and sensors): whether the
/// microphone is lost, captions and windows dropped for lack of time, the real-time factor and
/// memory from `stats`, and each caption's latency.
fn diagnostics(
    topics: &Topics,
    device: &str,
    with: &dyn Fn(serde_json::Value) -> serde_json::Value,
) -> Vec<(String, serde_json::Value)> {
    let Some(prefix) = &topics.discovery else {
        return Vec::new();
    };
    let entity = |kind: &str, key: &str, name: &str, extra: serde_json::Value| {
        let mut doc = with(serde_json::json!({
            "name": name,
            "unique_id": format!("hark_{device}_{key}"),
            "state_topic": topics.stats,
            "entity_category": "diagnostic",
        }));
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        (format!("{prefix}/{kind}/hark_{device}/{key}/config"), doc)
    };
    vec![
        entity(
            "binary_sensor",
            "source_lost",
            "Microphone lost",
            serde_json::json!({"device_class": "problem",
                "value_template": "{{ 'ON' if value_json.source_lost else 'OFF' }}"}),
        ),
        entity(
            "sensor",
            "dropped_captions",
            "Dropped captions",
            serde_json::json!({"state_class": "total_increasing",
                "value_template": "{{ value_json.dropped_captions }}"}),
        ),
        entity(
            "sensor",
            "skipped_windows",
            "Skipped windows",
            serde_json::json!({"state_class": "total_increasing",
                "value_template": "{{ value_json.skipped_windows }}"}),
        ),
        entity(
            "sensor",
            "rtf",
            "Real-time factor",
            serde_json::json!({"state_class": "measurement",
                "value_template": "{{ value_json.rtf | round(3) }}"}),
        ),
        entity(
            "sensor",
            "memory",
            "Memory",
            serde_json::json!({"state_class": "measurement", "device_class": "data_size",
                "unit_of_measurement": "MB",
                "value_template": "{{ (value_json.rss_bytes / 1000000) | round(1) }}"}),
        ),
        entity(
            "sensor",
            "latency",
            "Caption latency",
            serde_json::json!({"state_topic": topics.caption, "state_class": "measurement",
                "device_class": "duration", "unit_of_measurement": "ms",
                "value_template": "{{ value_json.latency_ms | round(0) }}"}),
        ),
    ]
}

/// `discovery` as the texts published.
fn discovery_texts(
    topics: &Topics,
    device: &str,
    model: &str,
    binary_sensors: &[String],
    triggers: &[String],
) -> Vec<(String, String)> {
    discovery(topics, device, model, binary_sensors, triggers)
        .into_iter()
        .map(|(topic, payload)| (topic, payload.to_string()))
        .collect()
}

/// Seconds a tag's or trigger's binary sensor stays on after the last message for it.
const TAG_OFF_DELAY: u32 = 30;

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
    binary_sensors: Vec<String>,
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
        binary_sensors: &[String],
        triggers: &[String],
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
            discovery: std::sync::Mutex::new(discovery_texts(
                &topics,
                device,
                model,
                binary_sensors,
                triggers,
            )),
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
            binary_sensors: binary_sensors.to_vec(),
            on_connect,
        })
    }

    /// Home Assistant learns of triggers added or removed by a command: a binary sensor's
    /// config for each new one, an empty retained config (which deletes the entity) for each
    /// one gone; later reconnections announce the new list.
    pub async fn set_triggers(&self, names: &[String]) -> Result<()> {
        let next = discovery_texts(
            &self.topics,
            &self.device,
            &self.model,
            &self.binary_sensors,
            names,
        );
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

/// Polls the event loop for the life of the client: connects and reconnects with backoff,
/// re-announces and resubscribes on every connection, forwards commands, counts acks.
// Long on purpose: rumqttc's event loop with each event's handling inline, as rumqttc's
// own examples read.
async fn drive(
    mut eventloop: EventLoop,
    on_connect: Arc<OnConnect>,
    commands: mpsc::Sender<Received>,
    endpoint: String,
    client_id: String,
) {
    let mut reconnect = Reconnect::default();
    let mut connected_once = false;
    let mut unsent = Unsent::default();
    let (mut ignored, mut report_at) = (0u64, 1u64);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let resent = unsent.restore(&mut eventloop.pending);
                log::info!(
                    "MQTT connected to {endpoint}{}{}",
                    if connected_once { " again" } else { "" },
                    if resent > 0 {
                        format!("; resending {resent} unacknowledged message(s)")
                    } else {
                        String::new()
                    }
                );
                connected_once = true;
                reconnect.connected(std::time::Instant::now());
                on_connect.online.store(true, Relaxed);
                let announce = on_connect.clone().announce();
                tokio::spawn(async move {
                    if let Err(e) = announce.await {
                        log::warn!("MQTT: cannot announce the device: {e}");
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == on_connect.topics.set => {
                let msg = Received {
                    payload: p.payload.to_vec(),
                    retained: p.retain,
                };
                if commands.try_send(msg).is_err() {
                    ignored += 1;
                    // At 1, 10, 100, …: a flood is reported, not echoed line by line.
                    if ignored == report_at {
                        log::warn!("{ignored} command(s) ignored: too many at once");
                        report_at *= 10;
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                on_connect.acks.acked.fetch_add(1, Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                unsent.keep(&mut eventloop.pending);
                if e.to_string().contains("payload size limit exceeded") {
                    on_connect.set_off(SET_OFF_AFTER_OVERSIZE);
                }
                on_connect.online.store(false, Relaxed);
                let error = e.to_string();
                let retry = reconnect.failed(std::time::Instant::now(), Failure::of(&error));
                if retry.takeover {
                    log::warn!(
                        "MQTT {endpoint}: the broker closed {TAKEOVER_AFTER} connections in a row \
                         within {} s of accepting them while staying up: another client probably \
                         uses the client id {client_id:?} (two hark daemons with the same device \
                         id?); give each its own `device` or mqtt.client_id",
                        SHORT.as_secs()
                    );
                }
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let wait = jitter(retry.after, nanos);
                log::warn!(
                    "MQTT {endpoint}: {error}{}; retrying in {:.1} s",
                    hint(&error, endpoint.starts_with("mqtts")),
                    wait.as_secs_f32()
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The messages a lost connection left unacknowledged. On a connection error rumqttc moves
/// what was in flight, and what still waited in the client's queue, to `EventLoop::pending`,
/// and drops all of it when the broker starts a new session — always, with a clean session,
/// and after a broker restart that lost its sessions. They are taken out before reconnecting
/// and put back after the CONNACK: QoS 1 is at least once (`seq` marks a resent duplicate),
/// and at most `inflight + 2 × queue` messages are held, so memory stays bounded; once the
/// client's queue is full again, publishing waits and the pipeline's queues drop and count.
#[derive(Default)]
struct Unsent(VecDeque<Request>);

impl Unsent {
    /// Takes what rumqttc would resend (after the messages already held); stale QoS 0
    /// messages (stats) are let go.
    fn keep(&mut self, pending: &mut VecDeque<Request>) {
        self.0.extend(
            pending
                .drain(..)
                .filter(|r| !matches!(r, Request::Publish(p) if p.qos == QoS::AtMostOnce)),
        );
    }

    /// Puts the held messages back at the head of the send queue; returns how many.
    fn restore(&mut self, pending: &mut VecDeque<Request>) -> usize {
        let held = self.0.len();
        self.0.extend(pending.drain(..));
        std::mem::swap(&mut self.0, pending);
        held
    }
}

/// What a bare connection error most likely means, for the errors whose text does not say.
fn hint(error: &str, tls: bool) -> &'static str {
    if error.contains("CaUsedAsEndEntity") {
        " (the broker presents the CA certificate itself: give it a certificate signed by \
         mqtt.tls.ca_file's CA)"
    } else if error.contains("UnknownIssuer") {
        " (the broker's certificate is not signed by mqtt.tls.ca_file)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        " (the broker's certificate is not for mqtt.host: use the name it was issued for)"
    } else if error.contains("Expired") || error.contains("certificate expired") {
        " (the broker's certificate has expired)"
    } else if tls && (error.contains("reset by peer") || error.contains("InvalidContentType")) {
        " (is this port a TLS listener? 1883 is usually plain MQTT, 8883 TLS)"
    } else if error.contains("Connection refused") {
        " (nothing listens there: is the broker running, and is mqtt.port right?)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_messages_survive_a_new_session_in_order_and_stale_stats_do_not() {
        let publish = |topic: &str, qos| Request::Publish(rumqttc::Publish::new(topic, qos, "x"));
        let mut unsent = Unsent::default();
        // First error: what was in flight and queued.
        let mut pending: VecDeque<Request> = [
            publish("c1", QoS::AtLeastOnce),
            publish("stats", QoS::AtMostOnce),
        ]
        .into();
        unsent.keep(&mut pending);
        // A second error before reconnecting (say a refused connection) adds more.
        pending.push_back(publish("c2", QoS::AtLeastOnce));
        unsent.keep(&mut pending);
        assert!(pending.is_empty());
        // The CONNACK of a new session: rumqttc cleared `pending`; the messages go back.
        assert_eq!(unsent.restore(&mut pending), 2);
        let topics: Vec<&str> = pending
            .iter()
            .map(|r| match r {
                Request::Publish(p) => p.topic.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(topics, ["c1", "c2"]);
        assert_eq!(unsent.restore(&mut pending), 0, "held once, not twice");
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn connection_errors_get_a_hint_where_their_text_is_bare() {
        assert!(
            hint("I/O: Connection reset by peer (os error 104)", true).contains("TLS listener")
        );
        assert_eq!(
            hint("I/O: Connection reset by peer (os error 104)", false),
            ""
        );
        assert!(
            hint(
                "Tls: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                true
            )
            .contains("CA certificate itself")
        );
        assert!(hint("I/O: Connection refused (os error 111)", false).contains("broker running"));
        assert!(
            hint(
                "TLS: I/O: invalid peer certificate: certificate not valid for name \"localhost\"",
                true
            )
            .contains("not for mqtt.host")
        );
    }

    #[test]
    fn discovery_announces_caption_tags_and_a_binary_sensor_per_configured_label() {
        let cfg = MqttConfig::new("localhost".into());
        let topics = Topics::new(&cfg, "kitchen");
        let d = discovery(
            &topics,
            "kitchen",
            "m",
            &["dog".into(), "glass breaking".into()],
            &["window".into()],
        );
        let names: Vec<&str> = d.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "homeassistant/sensor/hark_kitchen/caption/config",
                "homeassistant/sensor/hark_kitchen/tags/config",
                "homeassistant/binary_sensor/hark_kitchen/tag_dog/config",
                "homeassistant/binary_sensor/hark_kitchen/tag_glass_breaking/config",
                "homeassistant/binary_sensor/hark_kitchen/source_lost/config",
                "homeassistant/sensor/hark_kitchen/dropped_captions/config",
                "homeassistant/sensor/hark_kitchen/skipped_windows/config",
                "homeassistant/sensor/hark_kitchen/rtf/config",
                "homeassistant/sensor/hark_kitchen/memory/config",
                "homeassistant/sensor/hark_kitchen/latency/config",
                "homeassistant/event/hark_kitchen/trigger_window/config",
                "homeassistant/binary_sensor/hark_kitchen/trigger_window/config",
            ]
        );
        let (event, window) = (&d[10].1, &d[11].1);
        assert_eq!(event["state_topic"], "hark/kitchen/trigger/window");
        assert_eq!(event["event_types"][0], "fired");
        assert_eq!(window["state_topic"], "hark/kitchen/trigger/window");
        assert_eq!(window["off_delay"], TAG_OFF_DELAY);
        assert_ne!(event["unique_id"], window["unique_id"]);
        let lost = &d[4].1;
        assert_eq!(lost["state_topic"], "hark/kitchen/stats");
        assert_eq!(lost["entity_category"], "diagnostic");
        assert_eq!(d[9].1["state_topic"], "hark/kitchen/caption");
        assert_eq!(lost["origin"]["sw_version"], env!("CARGO_PKG_VERSION"));
        let glass = &d[3].1;
        assert_eq!(glass["state_topic"], "hark/kitchen/caption");
        assert_eq!(glass["off_delay"], TAG_OFF_DELAY);
        assert!(
            glass["value_template"]
                .as_str()
                .unwrap()
                .contains("'equalto', 'glass breaking'")
        );
        assert_eq!(glass["device"]["identifiers"][0], "hark_kitchen");
    }

    #[test]
    fn without_discovery_nothing_is_announced() {
        let mut cfg = MqttConfig::new("localhost".into());
        cfg.discovery = false;
        let topics = Topics::new(&cfg, "kitchen");
        assert!(discovery(&topics, "kitchen", "m", &["dog".into()], &[]).is_empty());
    }
}
