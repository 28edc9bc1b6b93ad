//! Commands from `<prefix>/<device>/set` (docs/schema/command.schema.json): pause and resume
//! captioning, change or reset decoding parameters, ask for stats. A command that cannot be
//! parsed or applied changes nothing and is answered on `<prefix>/<device>/error`.

use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use crate::config::TriggerConfig;
use crate::pipeline::control::{COMMAND_BURST, COMMAND_RATE, Control};
use crate::stats::Counters;

/// A message received on `set`.
#[derive(Debug, Clone)]
pub struct Received {
    /// The payload, as sent.
    pub payload: Vec<u8>,
    /// Delivered from the broker's retained store rather than sent now: refused, or a
    /// retained `pause` would silence every future start.
    pub retained: bool,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Stop captioning (audio keeps flowing and is counted as paused windows).
    Pause,
    /// Caption again.
    Resume,
    /// Override decoding parameters (any `[decoding]` key of the manifest).
    Decoding {
        /// The keys to change.
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// Back to the configured decoding parameters.
    ResetDecoding,
    /// Publish stats now.
    Stats,
    /// Add triggers (a name already in use is replaced) and remove triggers by name.
    Triggers {
        /// `[[triggers]]` tables to add.
        #[serde(default)]
        add: Vec<TriggerConfig>,
        /// Names to remove.
        #[serde(default)]
        remove: Vec<String>,
    },
    /// Learn the latest windows heard without speech as a sound (docs/SOUNDS.md); the
    /// answer comes on `learned` (or `error`).
    Learn {
        /// The sound's name.
        name: String,
        /// How many of the latest windows (default 1).
        #[serde(default = "one")]
        windows: usize,
    },
}

const fn one() -> usize {
    1
}

/// The payload on the error topic.
#[derive(Debug, Serialize)]
pub struct CommandError {
    /// Payload version.
    pub v: u32,
    /// What was wrong and what is accepted.
    pub error: String,
    /// The offending command (at most 256 bytes of it).
    pub command: String,
}

/// The commands, for error messages.
const ALLOWED: &str = "pause, resume, decoding (with params), reset_decoding, stats, triggers (with add, remove), learn (with name, windows)";

/// Longest command accepted: the largest valid one (every decoding key) is under 1 KB.
pub const MAX_COMMAND_BYTES: usize = 4096;

// Commands are applied to the pipeline's control state (pipeline/control.rs).
impl Control {
    /// Parses and applies a received command; the error says why nothing changed.
    pub fn apply(&self, msg: &Received, counters: &Counters) -> Result<Command, CommandError> {
        if !self.allow_command() {
            return Err(refuse(
                counters,
                &msg.payload,
                format!(
                    "too many commands: at most {COMMAND_BURST} at once, then {COMMAND_RATE} per \
                     second; this one was not applied"
                ),
            ));
        }
        self.handle(msg, counters)
    }

    /// `apply` without the rate limit.
    pub(crate) fn handle(
        &self,
        msg: &Received,
        counters: &Counters,
    ) -> Result<Command, CommandError> {
        let raw = msg.payload.as_slice();
        let fail = |error: String| refuse(counters, raw, error);
        if msg.retained {
            return Err(fail(
                "a retained command is not applied (it would replay at every start): clear it \
                 with mosquitto_pub -r -n -t <this set topic> and send commands without retain"
                    .into(),
            ));
        }
        if raw.len() > MAX_COMMAND_BYTES {
            return Err(fail(format!(
                "command of {} bytes: at most {MAX_COMMAND_BYTES}",
                raw.len()
            )));
        }
        let cmd = parse(raw).map_err(|e| {
            fail(format!(
                "not a valid command ({e}); send JSON like {{\"cmd\": \"pause\"}}; commands: {ALLOWED}"
            ))
        })?;
        match &cmd {
            Command::Pause => counters.paused.store(true, Relaxed),
            Command::Resume => counters.paused.store(false, Relaxed),
            Command::Decoding { params } => {
                self.override_params(params)
                    .map_err(|e| fail(e.to_string()))?;
            }
            Command::ResetDecoding => self.reset_params(),
            Command::Stats => {}
            Command::Triggers { add, remove } => self.change_triggers(add, remove).map_err(fail)?,
            Command::Learn { name, windows } => self.request_learn(name, *windows).map_err(fail)?,
        }
        Ok(cmd)
    }
}

/// A refused command, counted in stats: the reason and the first 256 bytes of the command.
fn refuse(counters: &Counters, raw: &[u8], error: String) -> CommandError {
    counters.rejected_commands.fetch_add(1, Relaxed);
    CommandError {
        v: 1,
        error,
        command: String::from_utf8_lossy(&raw[..raw.len().min(256)]).into_owned(),
    }
}

/// A command object: serde lets a unit variant of an internally tagged enum ignore extra keys
/// (`{"cmd":"pause","x":1}`), so the keys are checked here, as command.schema.json does.
fn parse(raw: &[u8]) -> Result<Command, ParseError> {
    // serde_json keeps the last of two equal keys: {"cmd":"stats","cmd":"pause"} would pause
    // while a filter in front of the broker that reads the first key sees `stats`.
    let mut de = serde_json::Deserializer::from_slice(raw);
    serde::de::DeserializeSeed::deserialize(UniqueKeys, &mut de)?;
    let value: serde_json::Value = serde_json::from_slice(raw)?;
    let obj = value.as_object().ok_or(ParseError::NotAnObject)?;
    let allowed: &[&str] = match obj.get("cmd").and_then(|c| c.as_str()) {
        Some("decoding") => &["cmd", "params"],
        Some("triggers") => &["cmd", "add", "remove"],
        Some("learn") => &["cmd", "name", "windows"],
        _ => &["cmd"],
    };
    if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ParseError::UnknownKey(extra.clone()));
    }
    Ok(serde_json::from_value(value)?)
}

/// Walks a JSON document and refuses an object that repeats a key, at any depth.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice (each key once)"
                )));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Why a payload is not a command.
#[derive(Debug, thiserror::Error)]
enum ParseError {
    /// Not JSON, or a command with wrong or missing fields (serde's message names them).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A key the command does not have.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodeParams;

    fn sent(raw: &[u8]) -> Received {
        Received {
            payload: raw.to_vec(),
            retained: false,
        }
    }

    fn control() -> (Control, Counters) {
        (
            Control::new(DecodeParams::default(), 30),
            Counters::default(),
        )
    }

    #[test]
    fn pause_and_resume() {
        let (c, n) = control();
        c.handle(&sent(br#"{"cmd":"pause"}"#), &n).unwrap();
        assert!(n.paused.load(Relaxed));
        c.handle(&sent(br#"{"cmd":"resume"}"#), &n).unwrap();
        assert!(!n.paused.load(Relaxed));
    }

    #[test]
    fn decoding_changes_only_the_given_keys_and_resets() {
        let (c, n) = control();
        c.handle(
            &sent(br#"{"cmd":"decoding","params":{"strategy":"beam","beam_size":4}}"#),
            &n,
        )
        .unwrap();
        let p = c.params();
        assert_eq!(p.beam_size, 4);
        assert_eq!(p.max_len, DecodeParams::default().max_len);
        c.handle(&sent(br#"{"cmd":"reset_decoding"}"#), &n).unwrap();
        assert_eq!(c.params(), DecodeParams::default());
    }

    #[test]
    fn bad_commands_change_nothing_and_say_why() {
        let (c, n) = control();
        let err = |raw: &[u8]| c.handle(&sent(raw), &n).unwrap_err().error;
        assert!(err(b"pause").contains("not a valid command"));
        assert!(err(br#"{"cmd":"explode"}"#).contains("explode"));
        assert!(err(br#"{"cmd":"decoding","params":{"beam_size":0}}"#).contains("beam_size"));
        assert!(err(br#"{"cmd":"decoding","params":{"max_len":31}}"#).contains("at most 30"));
        assert!(err(br#"{"cmd":"decoding","params":{"colour":"red"}}"#).contains("colour"));
        assert_eq!(c.params(), DecodeParams::default());
        assert!(!n.paused.load(Relaxed));
        let long = vec![b'x'; 1000];
        assert_eq!(c.handle(&sent(&long), &n).unwrap_err().command.len(), 256);
        assert!(err(br#"{"cmd":"pause","then":"explode"}"#).contains("\"then\""));
        assert!(err(br#"{"cmd":"stats","params":{}}"#).contains("\"params\""));
        assert!(err(b"[1]").contains("not a JSON object"));
        let mut huge = br#"{"cmd":"pause","x":""#.to_vec();
        huge.extend(vec![b'x'; 300_000]);
        huge.extend(br#""}"#);
        assert!(err(&huge).contains("at most 4096"));
        let retained = Received {
            payload: br#"{"cmd":"pause"}"#.to_vec(),
            retained: true,
        };
        assert!(
            c.handle(&retained, &n)
                .unwrap_err()
                .error
                .contains("retained")
        );
        assert!(!n.paused.load(Relaxed));
        assert_eq!(n.rejected_commands.load(Relaxed), 11);
    }

    #[test]
    fn a_key_given_twice_at_any_depth_is_refused() {
        // The probe: serde kept the last `cmd`, so this paused hark.
        let (c, n) = control();
        for raw in [
            &br#"{"cmd":"stats","cmd":"pause"}"#[..],
            br#"{"cmd":"decoding","params":{"beam_size":2,"beam_size":3}}"#,
            br#"{"cmd":"triggers","add":[{"name":"a","name":"b","phrases":["dog"]}]}"#,
        ] {
            let e = c.handle(&sent(raw), &n).unwrap_err().error;
            assert!(e.contains("appears twice"), "{e}");
        }
        assert!(!n.paused.load(Relaxed));
        assert_eq!(c.params(), DecodeParams::default());
        // Equal keys in different objects are fine.
        c.handle(
            &sent(br#"{"cmd":"decoding","params":{"strategy":"beam","beam_size":2}}"#),
            &n,
        )
        .unwrap();
    }

    #[test]
    fn triggers_are_added_replaced_and_removed_and_bad_ones_change_nothing() {
        let bundle = crate::pipeline::triggers::test_bundle();
        let configured = vec![TriggerConfig {
            name: "dog".into(),
            phrases: vec!["a dog barks".into()],
            threshold: None,
        }];
        let c = Control::new(DecodeParams::default(), 30).with_triggers(configured, bundle);
        let n = Counters::default();
        let names =
            |c: &Control| -> Vec<String> { c.triggers().iter().map(|t| t.name.clone()).collect() };
        c.handle(
            &sent(br#"{"cmd":"triggers","add":[{"name":"glass","phrases":["glass breaks"],"threshold":1.5}]}"#),
            &n,
        )
        .unwrap();
        assert_eq!(names(&c), ["dog", "glass"]);
        assert_eq!(c.trigger_changes(), 1);
        c.handle(&sent(br#"{"cmd":"triggers","remove":["dog"]}"#), &n)
            .unwrap();
        assert_eq!(names(&c), ["glass"]);
        // Unknown words, bad names and extra keys are refused; the triggers stay as they were.
        let err = |raw: &[u8]| c.handle(&sent(raw), &n).unwrap_err().error;
        assert!(
            err(br#"{"cmd":"triggers","add":[{"name":"cat","phrases":["a cat"]}]}"#)
                .contains("\"cat\"")
        );
        assert!(
            err(br#"{"cmd":"triggers","add":[{"name":"Cat!","phrases":["a dog"]}]}"#)
                .contains("name")
        );
        assert!(err(br#"{"cmd":"triggers","drop":["glass"]}"#).contains("\"drop\""));
        assert_eq!(names(&c), ["glass"]);
        assert_eq!(c.trigger_changes(), 2);
        // Without a model there is nothing to check words against.
        let bare = Control::new(DecodeParams::default(), 30);
        assert!(
            bare.handle(&sent(br#"{"cmd":"triggers","remove":["x"]}"#), &n)
                .unwrap_err()
                .error
                .contains("no model")
        );
    }

    #[test]
    fn a_flood_of_commands_is_refused_beyond_the_burst_and_counted() {
        let c = Control::new(DecodeParams::default(), 30);
        let n = Counters::default();
        let pause = Received {
            payload: br#"{"cmd":"stats"}"#.to_vec(),
            retained: false,
        };
        let results: Vec<_> = (0..15).map(|_| c.apply(&pause, &n)).collect();
        assert!(results[..COMMAND_BURST as usize].iter().all(Result::is_ok));
        let refused = &results[COMMAND_BURST as usize..];
        assert!(
            refused
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.error.contains("too many")))
        );
        assert_eq!(n.rejected_commands.load(Relaxed), 5);
    }
}
