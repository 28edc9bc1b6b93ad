//! The client's event loop: connects and reconnects (the rules in `sink/reconnect.rs`), keeps
//! unacknowledged messages across sessions, forwards `set` commands and counts acks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rumqttc::{Event, EventLoop, Outgoing, Packet, QoS, Request};
use tokio::sync::mpsc;

use super::{OnConnect, SET_OFF_AFTER_OVERSIZE};
use crate::sink::commands::Received;
use crate::sink::reconnect::{Failure, Reconnect, SHORT, TAKEOVER_AFTER, jitter};

/// Polls the event loop for the life of the client: connects and reconnects with backoff,
/// re-announces and resubscribes on every connection, forwards commands, counts acks.
// Long on purpose: rumqttc's event loop with each event's handling inline, as rumqttc's
// own examples read.
pub(super) async fn drive(
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
}
