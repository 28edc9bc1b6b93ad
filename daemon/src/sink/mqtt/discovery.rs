//! Home Assistant MQTT discovery: the documents that make hark's captions, tags, triggers and
//! diagnostics entities of a device (docs/MQTT.md, docs/schema/discovery.schema.json).

use super::Topics;

/// What a device's entities are made of besides its captions and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Entities {
    /// Tag labels with a binary sensor (`tags.binary_sensors`).
    pub binary_sensors: Vec<String>,
    /// Trigger names.
    pub triggers: Vec<String>,
    /// Learned sounds' names.
    pub sounds: Vec<String>,
    /// Whether the model can learn sounds (a text entity then names the last sound heard).
    pub learn: bool,
}

/// Home Assistant MQTT discovery, as (config topic, payload) pairs: a sensor whose state is
/// the latest caption (the rest of the payload as attributes), a sensor listing its tags, a
/// binary sensor per label in `tags.binary_sensors`, on while captions carry that tag and
/// off `TAG_OFF_DELAY` seconds after the last one, and an event entity and a binary sensor
/// per trigger and per learned sound.
// Long on purpose: the Home Assistant discovery documents, one literal per entity.
pub(super) fn discovery(
    topics: &Topics,
    device: &str,
    model: &str,
    entities: &Entities,
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
    for label in &entities.binary_sensors {
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
    // Learning from Home Assistant's UI: typing a name learns the last window heard
    // without speech as that sound (the `learn` command; the answer on `learned`).
    if entities.learn {
        out.push((
            format!("{prefix}/text/hark_{device}/learn/config"),
            with(serde_json::json!({
                "name": "Learn the last sound as",
                "unique_id": format!("hark_{device}_learn"),
                "command_topic": topics.set,
                "command_template": "{\"cmd\": \"learn\", \"name\": \"{{ value }}\"}",
                "state_topic": topics.learned,
                "value_template": "{{ value_json.sound }}",
                "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$",
                "min": 1,
                "max": 32,
                "icon": "mdi:school",
            })),
        ));
    }
    // Per trigger and learned sound an event entity (HA's kind for a momentary happening,
    // like a doorbell) and a binary sensor, on with each message on its topic and off
    // TAG_OFF_DELAY seconds after the last, for automations on a state (names are already
    // topic-safe: a-z, 0-9, _ and -).
    let kinds = [
        (
            "trigger",
            "Trigger",
            &entities.triggers,
            &topics.trigger,
            "phrase",
        ),
        ("sound", "Sound", &entities.sounds, &topics.sound, "sound"),
    ];
    for (kind, title, names, topic, what) in kinds {
        for name in names {
            let state = format!("{topic}/{name}");
            out.push((
                format!("{prefix}/event/hark_{device}/{kind}_{name}/config"),
                with(serde_json::json!({
                    "name": format!("{title} {name}"),
                    "unique_id": format!("hark_{device}_{kind}_{name}_event"),
                    "state_topic": state,
                    "event_types": ["fired"],
                    "value_template": format!("{{{{ {{'event_type': 'fired', '{what}': value_json.{what}, \
                        'score': value_json.score, 'caption': value_json.caption}} | to_json }}}}"),
                    "icon": "mdi:bell-ring",
                })),
            ));
            out.push((
                format!("{prefix}/binary_sensor/hark_{device}/{kind}_{name}/config"),
                with(serde_json::json!({
                    "name": format!("{title} {name}"),
                    "unique_id": format!("hark_{device}_{kind}_{name}"),
                    "state_topic": state,
                    "value_template": "ON",
                    "payload_on": "ON",
                    "off_delay": TAG_OFF_DELAY,
                    "json_attributes_topic": state,
                    "icon": "mdi:bell-ring",
                })),
            ));
        }
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
pub(super) fn discovery_texts(
    topics: &Topics,
    device: &str,
    model: &str,
    entities: &Entities,
) -> Vec<(String, String)> {
    discovery(topics, device, model, entities)
        .into_iter()
        .map(|(topic, payload)| (topic, payload.to_string()))
        .collect()
}

/// Seconds a tag's or trigger's binary sensor stays on after the last message for it.
const TAG_OFF_DELAY: u32 = 30;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttConfig;

    #[test]
    fn discovery_announces_caption_tags_and_a_binary_sensor_per_configured_label() {
        let cfg = MqttConfig::new("localhost".into());
        let topics = Topics::new(&cfg, "kitchen");
        let entities = Entities {
            binary_sensors: vec!["dog".into(), "glass breaking".into()],
            triggers: vec!["window".into()],
            sounds: vec!["doorbell".into()],
            learn: true,
        };
        let d = discovery(&topics, "kitchen", "m", &entities);
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
                "homeassistant/text/hark_kitchen/learn/config",
                "homeassistant/event/hark_kitchen/trigger_window/config",
                "homeassistant/binary_sensor/hark_kitchen/trigger_window/config",
                "homeassistant/event/hark_kitchen/sound_doorbell/config",
                "homeassistant/binary_sensor/hark_kitchen/sound_doorbell/config",
            ]
        );
        let learn = &d[10].1;
        assert_eq!(learn["command_topic"], "hark/kitchen/set");
        assert_eq!(learn["state_topic"], "hark/kitchen/learned");
        let (event, window) = (&d[11].1, &d[12].1);
        assert_eq!(event["state_topic"], "hark/kitchen/trigger/window");
        assert_eq!(event["event_types"][0], "fired");
        assert_eq!(window["state_topic"], "hark/kitchen/trigger/window");
        assert_eq!(window["off_delay"], TAG_OFF_DELAY);
        assert_ne!(event["unique_id"], window["unique_id"]);
        let bell = &d[13].1;
        assert_eq!(bell["state_topic"], "hark/kitchen/sound/doorbell");
        assert!(
            bell["value_template"]
                .as_str()
                .unwrap()
                .contains("value_json.sound")
        );
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
        let entities = Entities {
            binary_sensors: vec!["dog".into()],
            ..Entities::default()
        };
        assert!(discovery(&topics, "kitchen", "m", &entities).is_empty());
    }
}
