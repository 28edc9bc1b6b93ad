//! Meaning-level triggers (`[[triggers]]`): users name what they care about in words, and a
//! window fires a trigger when the caption model finds one of its phrases likely. Pure
//! logic; the scores come from `decode::score_phrases` through `Captioner::caption_mel`.
//!
//! A phrase's trigger score is its length-normalised log-probability as the start of the
//! window's caption minus the same under a window of digital silence: how much the audio
//! raises the phrase. Phrases of different length and wording start from different levels;
//! the silence baseline puts them on one scale. A phrase that names a label of the model's
//! own tag head ("a dog barks": dog) adds that head's evidence, the log-odds of the label's
//! probability; and a phrase that the window's caption or one of its alternatives says, in
//! its words or their synonyms ("glass breaks" in "… glass shatters"), adds the bundle's
//! caption weight (docs/triggers/TRIGGERS.md measures all three).

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::config::TriggerConfig;
use crate::decode::DecodeParams;
use crate::model::Captioner;
use crate::model::bundle::{Bundle, PhraseError};
use crate::pipeline::privacy;

/// The score at or above which a trigger fires unless it or the bundle (`[triggers]
/// threshold`) sets its own: the one threshold that maximised the mean F1 of the category
/// names on validation recordings for the first real-sound model, which had no `[triggers]`
/// (the shipped bundles carry their own: docs/triggers/TRIGGERS.md).
pub const DEFAULT_THRESHOLD: f32 = 4.9;

/// Weight of the tag head's log-odds in the score of a phrase that names one of its labels,
/// unless the bundle sets its own (`[triggers] tag_weight`; chosen on the validation
/// recordings: docs/triggers/TRIGGERS.md).
pub const TAG_WEIGHT: f32 = 1.0;

/// Added to the score of a phrase the window's caption says, unless the bundle sets its own
/// (`[triggers] caption_weight`): as much as the default threshold, so that a phrase the
/// caption says fires unless the audio makes it less likely than silence does.
pub const CAPTION_WEIGHT: f32 = DEFAULT_THRESHOLD;

/// How a bundle's trigger scores are read: its `[triggers]`, else the daemon's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The default threshold.
    pub threshold: f32,
    /// Weight of the tag head's log-odds.
    pub tag_weight: f32,
    /// Added when the caption says the phrase.
    pub caption_weight: f32,
}

impl Default for Calibration {
    /// The daemon's defaults.
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            tag_weight: TAG_WEIGHT,
            caption_weight: CAPTION_WEIGHT,
        }
    }
}

/// The trigger calibration of `bundle`.
fn calibration(bundle: &Bundle) -> Calibration {
    let t = &bundle.manifest.triggers;
    Calibration {
        threshold: t.threshold.unwrap_or(DEFAULT_THRESHOLD),
        tag_weight: t.tag_weight.unwrap_or(TAG_WEIGHT),
        caption_weight: t.caption_weight.unwrap_or(CAPTION_WEIGHT),
    }
}

/// At most this many triggers, from the configuration and `set` commands together.
pub const MAX_TRIGGERS: usize = 32;
/// At most this many phrases per trigger.
pub const MAX_PHRASES: usize = 16;
/// At most this many phrases in all: every window scores each through the decoder (40
/// phrases cost 27 ms of a 10 s window on the development machine, docs/MQTT.md), so the
/// bound keeps a flood of triggers from slowing captioning behind the live source.
pub const MAX_ALL_PHRASES: usize = 64;
/// At most this many characters per phrase (a caption is at most `tokens.max_len` words).
pub const MAX_PHRASE_CHARS: usize = 200;

/// Words a phrase can leave out of a caption and still be said by it.
const FILLER: &[&str] = &[
    "a",
    "an",
    "the",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "of",
    "in",
    "on",
    "at",
    "to",
    "and",
    "or",
    "with",
    "by",
    "from",
    "for",
    "into",
    "its",
    "it",
    "some",
    "something",
    "someone",
    "somebody",
    "while",
    "then",
    "as",
    "there",
];

/// A phrase as every window scores it: its tokens, the tag label it names and the words a
/// caption must hold to say it.
#[derive(Debug, Clone)]
pub struct Phrase {
    /// As given.
    pub text: String,
    /// Token ids, as the model reads it.
    pub tokens: Vec<u32>,
    /// The index of the first tag head's label it names, if any.
    label: Option<usize>,
    /// Per word a caption must hold, the words that count for it (the word, or every word of
    /// its synonym groups): the sound its first word names, if it names one, and its words
    /// that name none; else each of its words but the filler. Empty: no caption says it.
    needs: Vec<Vec<String>>,
}

impl Phrase {
    /// Reads `text` with `bundle`'s vocabulary, tag labels and synonyms.
    pub fn new(bundle: &Bundle, text: &str) -> Result<Self, PhraseError> {
        let tokens = bundle.phrase_tokens(text)?;
        let words: Vec<&str> = tokens
            .iter()
            .filter_map(|&t| bundle.vocab.get(t as usize).map(String::as_str))
            .collect();
        let groups = &bundle.manifest.triggers.synonyms;
        // Every word of the synonym groups `w` is in.
        let synonyms = |w: &str| -> Vec<String> {
            let mut out: Vec<String> = groups
                .iter()
                .filter(|g| g.iter().any(|x| x == w))
                .flatten()
                .cloned()
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let content: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !FILLER.contains(w))
            .collect();
        let subject = content.first().map(|w| synonyms(w)).unwrap_or_default();
        let needs: Vec<Vec<String>> = if subject.is_empty() {
            // No sound named first ("a woman speaks"): each word, or a synonym of it.
            content
                .iter()
                .map(|w| {
                    let s = synonyms(w);
                    if s.is_empty() { vec![w.to_string()] } else { s }
                })
                .collect()
        } else {
            // The sound its subject names ("glass breaks": glass, shatters, window, …; its
            // verb may be any), and the words that name no sound.
            std::iter::once(subject)
                .chain(
                    content[1..]
                        .iter()
                        .filter(|w| synonyms(w).is_empty())
                        .map(|w| vec![w.to_string()]),
                )
                .collect()
        };
        Ok(Self {
            text: text.to_string(),
            label: phrase_label(bundle, text),
            tokens,
            needs,
        })
    }

    /// Whether one of `captions` says the phrase: holds, for each word it needs, that word or
    /// a synonym.
    pub fn said_by(&self, captions: &[&str]) -> bool {
        !self.needs.is_empty()
            && captions.iter().any(|c| {
                let words: Vec<&str> = c.split_whitespace().collect();
                self.needs
                    .iter()
                    .all(|need| need.iter().any(|n| words.contains(&n.as_str())))
            })
    }

    /// The phrase's trigger score for its log-probability `raw` and silence baseline
    /// `silence`, the first tag head's probabilities `tags` and the window's `captions` (the
    /// caption, then the alternatives); and whether they say it.
    pub fn score(
        &self,
        raw: f32,
        silence: f32,
        tags: &[f32],
        captions: &[&str],
        cal: &Calibration,
    ) -> (f32, bool) {
        let said = self.said_by(captions);
        let caption = if said { cal.caption_weight } else { 0.0 };
        (
            score(raw, silence, self.label, tags, cal.tag_weight) + caption,
            said,
        )
    }
}

/// The configured triggers with their phrases as token ids and silence baselines.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    list: Vec<Trigger>,
    /// The bundle's calibration.
    calibration: Calibration,
}

#[derive(Debug, Clone)]
struct Trigger {
    name: String,
    phrases: Vec<Phrase>,
    threshold: f32,
    /// Whether a phrase or the tag label it names is about people speaking
    /// (`privacy::about_people`): such a trigger says nothing about a redacted window.
    about_people: bool,
}

/// A trigger that reached its threshold on a window, before the speech gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The trigger's name.
    pub trigger: String,
    /// Its best phrase on the window.
    pub phrase: String,
    /// That phrase's score, rounded to 0.001.
    pub score: f32,
    /// Whether the trigger is about people speaking.
    pub about_people: bool,
}

impl privacy::AboutPeople for Hit {
    fn about_people(&self) -> bool {
        self.about_people
    }
}

/// A trigger that fired on a window (the payload of `hark/<device>/trigger/<name>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fired {
    /// Payload version.
    pub v: u32,
    /// The trigger's name.
    pub trigger: String,
    /// Its best phrase on this window.
    pub phrase: String,
    /// That phrase's score (log-probability over silence's).
    pub score: f32,
    /// The window's published caption.
    pub caption: String,
    /// Window start, RFC 3339.
    pub start: String,
    /// Window end, RFC 3339.
    pub end: String,
}

/// Why a `[[triggers]]` table (or a `triggers` command's list) was refused; the message
/// names the key.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Not usable as an MQTT topic level.
    #[error(
        "triggers[{index}].name = {name:?}: use 1 to 64 of a-z, 0-9, _ and - (it is an MQTT topic level)"
    )]
    Name {
        /// Position in the list.
        index: usize,
        /// The name given.
        name: String,
    },
    /// Two triggers with one name (they would share a topic).
    #[error("triggers[{index}].name = {name:?}: another trigger has that name")]
    Duplicate {
        /// Position of the second one.
        index: usize,
        /// The name.
        name: String,
    },
    /// A trigger with nothing to listen for.
    #[error("triggers[{index}].phrases: give at least one phrase")]
    NoPhrases {
        /// Position in the list.
        index: usize,
    },
    /// A phrase the model cannot score.
    #[error("triggers[{index}].phrases: {error}")]
    Phrase {
        /// Position in the list.
        index: usize,
        /// What is wrong with the phrase.
        error: PhraseError,
    },
    /// More than the daemon scores per window.
    #[error("{what}: at most {max} (each phrase is scored on every window); remove some first")]
    TooMany {
        /// What is counted, named by key.
        what: String,
        /// The bound.
        max: usize,
    },
    /// A threshold that is not a number.
    #[error("triggers[{index}].threshold: must be a number")]
    Threshold {
        /// Position in the list.
        index: usize,
    },
}

impl Triggers {
    /// Checks the tables against the model: names usable as topic levels and unique, at
    /// least one phrase each, every word known to the model; errors name the key.
    pub fn build(configs: &[TriggerConfig], bundle: &Bundle) -> Result<Self, TriggerError> {
        check_sizes(configs)?;
        let cal = calibration(bundle);
        let mut list = Vec::new();
        for (index, c) in configs.iter().enumerate() {
            if c.name.is_empty()
                || c.name.len() > 64
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_-".contains(ch))
            {
                return Err(TriggerError::Name {
                    index,
                    name: c.name.clone(),
                });
            }
            if configs[..index].iter().any(|o| o.name == c.name) {
                return Err(TriggerError::Duplicate {
                    index,
                    name: c.name.clone(),
                });
            }
            if c.phrases.is_empty() {
                return Err(TriggerError::NoPhrases { index });
            }
            let phrases = c
                .phrases
                .iter()
                .map(|p| Phrase::new(bundle, p))
                .collect::<Result<Vec<_>, PhraseError>>()
                .map_err(|error| TriggerError::Phrase { index, error })?;
            let threshold = c.threshold.unwrap_or(cal.threshold);
            if !threshold.is_finite() {
                return Err(TriggerError::Threshold { index });
            }
            let head = bundle.labels.first();
            let about_people = c.phrases.iter().any(|p| privacy::about_people(p))
                || phrases
                    .iter()
                    .filter_map(|p| p.label)
                    .filter_map(|l| head.and_then(|h| h.get(l)))
                    .any(|l| privacy::about_people(l));
            list.push(Trigger {
                name: c.name.clone(),
                phrases,
                threshold,
                about_people,
            });
        }
        Ok(Self {
            list,
            calibration: cal,
        })
    }

    /// The bundle's calibration the triggers were built with.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// The triggers' names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|t| t.name.clone()).collect()
    }

    /// Every phrase of every trigger as token ids, in order: what each window scores.
    pub fn tokens(&self) -> Vec<Vec<u32>> {
        self.list
            .iter()
            .flat_map(|t| t.phrases.iter().map(|p| p.tokens.clone()))
            .collect()
    }

    /// The triggers that fire for phrase `scores` (as [`Triggers::tokens`]) minus their
    /// silence `baseline`, plus the tag head's evidence from `tags` (the first head's
    /// probabilities; empty without heads) and the caption weight for a phrase that one of
    /// `captions` says: per trigger its best phrase, if that reaches the threshold.
    pub fn fired(
        &self,
        scores: &[f32],
        baseline: &[f32],
        tags: &[f32],
        captions: &[&str],
    ) -> Vec<Hit> {
        let mut out = Vec::new();
        let mut i = 0;
        for t in &self.list {
            let best = t
                .phrases
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let (s, _) = p.score(
                        scores[i + k],
                        baseline[i + k],
                        tags,
                        captions,
                        &self.calibration,
                    );
                    (&p.text, s)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            i += t.phrases.len();
            if let Some((phrase, score)) = best
                && score >= t.threshold
            {
                out.push(Hit {
                    trigger: t.name.clone(),
                    phrase: phrase.clone(),
                    score: (score * 1000.0).round() / 1000.0,
                    about_people: t.about_people,
                });
            }
        }
        out
    }
}

/// The bounds on how much the triggers ask of every window (`MAX_TRIGGERS`, `MAX_PHRASES`,
/// `MAX_ALL_PHRASES`, `MAX_PHRASE_CHARS`), checked before any phrase is read.
fn check_sizes(configs: &[TriggerConfig]) -> Result<(), TriggerError> {
    if configs.len() > MAX_TRIGGERS {
        return Err(TriggerError::TooMany {
            what: format!("{} triggers", configs.len()),
            max: MAX_TRIGGERS,
        });
    }
    let all: usize = configs.iter().map(|c| c.phrases.len()).sum();
    if all > MAX_ALL_PHRASES {
        return Err(TriggerError::TooMany {
            what: format!("{all} phrases in all triggers"),
            max: MAX_ALL_PHRASES,
        });
    }
    for (index, c) in configs.iter().enumerate() {
        if c.phrases.len() > MAX_PHRASES {
            return Err(TriggerError::TooMany {
                what: format!("triggers[{index}].phrases: {}", c.phrases.len()),
                max: MAX_PHRASES,
            });
        }
        if let Some(p) = c
            .phrases
            .iter()
            .find(|p| p.chars().count() > MAX_PHRASE_CHARS)
        {
            return Err(TriggerError::TooMany {
                what: format!(
                    "triggers[{index}].phrases: a phrase of {} characters",
                    p.chars().count()
                ),
                max: MAX_PHRASE_CHARS,
            });
        }
    }
    Ok(())
}

/// The label of the model's own tag head (the first) that `phrase` names: its first word
/// that is one ("a dog barks": dog).
fn phrase_label(bundle: &Bundle, phrase: &str) -> Option<usize> {
    let head = bundle.labels.first()?;
    phrase
        .to_lowercase()
        .split_whitespace()
        .find_map(|w| head.iter().position(|l| l == w))
}

/// A phrase's trigger score: its log-probability `raw` over its `silence` baseline, plus
/// `tag_weight` × the log-odds of its `label` in `tags` (the first head's probabilities).
fn score(raw: f32, silence: f32, label: Option<usize>, tags: &[f32], tag_weight: f32) -> f32 {
    let evidence = label.and_then(|l| tags.get(l)).map_or(0.0, |&q| {
        let q = q.clamp(1e-6, 1.0 - 1e-6);
        tag_weight * (q / (1.0 - q)).ln()
    });
    raw - silence + evidence
}

/// A bundle whose vocabulary is "a dog barks glass breaks" (no graphs: triggers and commands
/// only check words).
#[cfg(test)]
pub(crate) fn test_bundle() -> Bundle {
    tests::bundle()
}

/// Trigger phrases' silence baselines: each phrase's score under a window of digital silence
/// (the front end's output for zeros) of a given length, what the model expects of it before
/// hearing anything. Made the first time a phrase is scored with windows of that length (a
/// stream shorter than one window gives a shorter one) and kept, up to [`BASELINES_KEPT`], so
/// triggers removed and added again cost nothing; shared by `hark caption --trigger` and the
/// daemon.
#[derive(Debug, Default)]
pub struct Baselines {
    /// Per window length in frames, per phrase (looked up by `&[u32]`, so a window clones
    /// nothing).
    scores: HashMap<usize, HashMap<Vec<u32>, f32>>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<(usize, Vec<u32>)>,
}

/// Baselines kept: four times the most phrases hark holds at once.
pub const BASELINES_KEPT: usize = 4 * MAX_ALL_PHRASES;

impl Baselines {
    /// The baselines of `phrases` for windows of `frames` frames, in their order; the ones
    /// not yet known are scored together in one silent window.
    pub fn get(
        &mut self,
        model: &dyn Captioner,
        params: &DecodeParams,
        phrases: &[Vec<u32>],
        frames: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let known = self.scores.entry(frames).or_default();
        let mut missing: Vec<Vec<u32>> = Vec::new();
        for p in phrases {
            if !known.contains_key(p.as_slice()) && !missing.contains(p) {
                missing.push(p.clone());
            }
        }
        if !missing.is_empty() {
            let fe = &model.bundle().manifest.frontend;
            let value = ((fe.log_offset).ln() - fe.norm_mean) / fe.norm_std;
            let mel = vec![value; frames * fe.n_mels];
            let scores = model.caption_mel(&mel, params, &missing)?.phrase_scores;
            for (p, s) in missing.into_iter().zip(scores) {
                self.order.push_back((frames, p.clone()));
                known.insert(p, s);
            }
        }
        let out = phrases.iter().map(|p| known[p.as_slice()]).collect();
        while self.order.len() > BASELINES_KEPT {
            if let Some((f, p)) = self.order.pop_front()
                && let Some(m) = self.scores.get_mut(&f)
            {
                m.remove(p.as_slice());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn bundle() -> Bundle {
        let vocab = [
            "<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "barks", "glass", "breaks",
        ];
        crate::model::bundle::testing::bundle(&vocab, "", vec![])
    }

    fn config(name: &str, phrases: &[&str], threshold: Option<f32>) -> TriggerConfig {
        TriggerConfig {
            name: name.into(),
            phrases: phrases.iter().map(|p| p.to_string()).collect(),
            threshold,
        }
    }

    #[test]
    fn a_trigger_fires_on_its_best_phrase_over_its_silence_baseline() {
        let t = Triggers::build(
            &[
                config("dog", &["a dog barks", "dog"], None),
                config("glass", &["glass breaks"], Some(1.0)),
            ],
            &bundle(),
        )
        .unwrap();
        // "a dog barks", "dog", "glass breaks" in the test vocabulary.
        assert_eq!(t.tokens(), [vec![4, 5, 6], vec![5], vec![7, 8]]);
        // "dog" rises 5.2 over silence (fires at the default 4.9); glass rises 0.5 (below
        // its 1.0).
        let fired = t.fired(&[-2.0, 1.0, -3.0], &[-3.0, -4.2, -3.5], &[], &[]);
        assert_eq!(fired, vec![hit("dog", "dog", 5.2)]);
        let fired = t.fired(&[-4.0, -5.0, -2.0], &[-3.0, -4.2, -3.5], &[], &[]);
        assert_eq!(fired, vec![hit("glass", "glass breaks", 1.5)]);
    }

    #[test]
    fn a_bundle_calibrated_for_triggers_sets_their_default_threshold() {
        let mut b = bundle();
        b.manifest.triggers.threshold = Some(6.0);
        let t = Triggers::build(&[config("dog", &["dog"], None)], &b).unwrap();
        // 5.2 over silence: over the daemon's default 4.9, under this bundle's 6.0.
        assert!(t.fired(&[1.0], &[-4.2], &[], &[]).is_empty());
        let own = Triggers::build(&[config("dog", &["dog"], Some(5.0))], &b).unwrap();
        assert_eq!(
            own.fired(&[1.0], &[-4.2], &[], &[]),
            vec![hit("dog", "dog", 5.2)]
        );
    }

    fn hit(trigger: &str, phrase: &str, score: f32) -> Hit {
        Hit {
            trigger: trigger.into(),
            phrase: phrase.into(),
            score,
            about_people: false,
        }
    }

    #[test]
    fn a_trigger_with_a_phrase_or_label_about_people_speaking_is_marked_so() {
        let vocab = [
            "<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "barks", "man", "says", "speech",
        ];
        let labels = vec![vec!["dog".to_string(), "speech".to_string()]];
        let b = crate::model::bundle::testing::bundle(&vocab, "", labels);
        let t = Triggers::build(
            &[
                config("dog", &["a dog barks"], Some(0.0)),
                config("mixed", &["a dog barks", "a man says"], Some(0.0)),
                config("label", &["speech"], Some(0.0)),
            ],
            &b,
        )
        .unwrap();
        let people: Vec<bool> = t
            .fired(&[0.0; 4], &[-1.0; 4], &[0.5, 0.5], &[])
            .iter()
            .map(|h| h.about_people)
            .collect();
        assert_eq!(people, [false, true, true]);
    }

    #[test]
    fn phrases_read_as_the_trainer_reads_captions_and_errors_name_what_was_typed() {
        let b = bundle();
        assert_eq!(b.phrase_tokens("A Dog, barks!").unwrap(), [4, 5, 6]);
        // The probe's "ünïcödé" was reported as the unknown word "n" (its first ASCII part).
        let e = b.phrase_tokens("a dog ünïcödé").unwrap_err().to_string();
        assert!(e.contains("the word \"ünïcödé\""), "{e}");
        // A control character is refused, not read as a space.
        let e = b.phrase_tokens("a dog\tbarks").unwrap_err().to_string();
        assert!(e.contains("U+0009"), "{e}");
        // A 10,000-character phrase is not echoed whole.
        let long = "dog ".repeat(2500);
        let e = b.phrase_tokens(&long).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains('…'), "{} bytes", e.len());
        let e = b
            .phrase_tokens(&format!("zorblax{}", "x".repeat(9_993)))
            .unwrap_err();
        assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
    }

    #[test]
    fn triggers_and_phrases_are_bounded_with_an_error_naming_the_bound() {
        let b = bundle();
        let err = |c: Vec<TriggerConfig>| Triggers::build(&c, &b).unwrap_err().to_string();
        let many: Vec<TriggerConfig> = (0..=MAX_TRIGGERS)
            .map(|i| config(&format!("t{i}"), &["dog"], None))
            .collect();
        assert!(err(many).contains("33 triggers: at most 32"));
        let phrases = vec!["a dog barks"; MAX_PHRASES + 1];
        assert!(err(vec![config("dog", &phrases, None)]).contains("triggers[0].phrases: 17"));
        let sixteen = vec!["dog"; MAX_PHRASES];
        let full: Vec<TriggerConfig> = (0..5)
            .map(|i| config(&format!("t{i}"), &sixteen, None))
            .collect();
        assert!(err(full).contains("80 phrases in all triggers: at most 64"));
        let long = "dog ".repeat(60);
        let e = err(vec![config("dog", &[long.as_str()], None)]);
        assert!(e.contains("a phrase of 240 characters: at most 200"), "{e}");
        // At the bounds: accepted.
        let four: Vec<TriggerConfig> = (0..4)
            .map(|i| config(&format!("t{i}"), &sixteen, None))
            .collect();
        assert!(Triggers::build(&four, &b).is_ok());
    }

    #[test]
    fn bad_tables_are_refused_naming_the_key() {
        let b = bundle();
        let err = |c: Vec<TriggerConfig>| Triggers::build(&c, &b).unwrap_err().to_string();
        assert!(err(vec![config("Dog Bark", &["dog"], None)]).contains("triggers[0].name"));
        assert!(
            err(vec![
                config("dog", &["dog"], None),
                config("dog", &["a dog"], None)
            ])
            .contains("triggers[1].name")
        );
        assert!(err(vec![config("dog", &[], None)]).contains("triggers[0].phrases"));
        let e = err(vec![config("cat", &["a cat meows"], None)]);
        assert!(
            e.contains("triggers[0].phrases") && e.contains("\"cat\""),
            "{e}"
        );
        assert!(err(vec![config("dog", &["dog"], Some(f32::NAN))]).contains("threshold"));
    }

    #[test]
    fn a_phrase_the_caption_says_in_its_words_or_synonyms_adds_the_caption_weight() {
        let vocab = [
            "<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "barks", "glass", "breaks", "shatters",
            "then", "window", "smashes", "the", "rain", "man",
        ];
        let mut b = crate::model::bundle::testing::bundle(&vocab, "", vec![]);
        b.manifest.triggers.caption_weight = Some(3.0);
        b.manifest.triggers.synonyms = vec![
            vec![
                "glass".into(),
                "shatters".into(),
                "window".into(),
                "smashes".into(),
            ],
            vec!["dog".into(), "barks".into()],
            vec!["breaks".into(), "hits".into()],
        ];
        let t = Triggers::build(&[config("glass", &["glass breaks"], Some(2.0))], &b).unwrap();
        // The probe's case: under its threshold by its own score (1.0 over silence) ...
        let quiet = [-3.0];
        let silence = [-4.0];
        assert!(t.fired(&quiet, &silence, &[], &["a dog barks"]).is_empty());
        // ... but the caption says it after another sound, or an alternative in a synonym.
        let said = t.fired(&quiet, &silence, &[], &["a dog barks then glass shatters"]);
        assert_eq!(said, vec![hit("glass", "glass breaks", 4.0)]);
        let alt = t.fired(&quiet, &silence, &[], &["rain", "a window smashes"]);
        assert_eq!(alt.len(), 1);
        // A phrase with no synonym needs each of its words but the filler.
        let rain = Phrase::new(&b, "the rain").unwrap();
        assert!(rain.said_by(&["a dog barks then rain"]));
        assert!(!rain.said_by(&["a dog barks"]));
        // The sound a phrase's subject names is what must be said: not another one.
        assert!(
            !Phrase::new(&b, "glass breaks")
                .unwrap()
                .said_by(&["a dog barks"])
        );
        // A phrase naming no sound first needs each of its words.
        let who = Phrase::new(&b, "a man barks").unwrap();
        assert!(who.said_by(&["a man barks"]) && !who.said_by(&["a dog barks"]));
        // Without the bundle's synonyms, a word counts only as itself.
        let plain = Phrase::new(&bundle(), "glass breaks").unwrap();
        assert!(!plain.said_by(&["glass shatters"]));
        assert!(plain.said_by(&["a dog barks then glass breaks"]));
    }

    #[test]
    fn a_phrase_naming_a_tag_label_adds_the_tag_heads_log_odds() {
        let vocab = [
            "<pad>", "<bos>", "<eos>", "<unk>", "a", "dog", "barks", "glass", "breaks",
        ];
        let labels = vec![vec!["cat".to_string(), "dog".to_string()]];
        let b = crate::model::bundle::testing::bundle(&vocab, "", labels);
        let t = Triggers::build(
            &[config("dog", &["a dog barks", "glass breaks"], Some(2.0))],
            &b,
        )
        .unwrap();
        // Over silence "a dog barks" rises 1.0, "glass breaks" 0.5: neither fires alone.
        assert!(
            t.fired(&[-2.0, -3.0], &[-3.0, -3.5], &[0.5, 0.5], &[])
                .is_empty()
        );
        // The tag head says dog at 0.9: + ln 9 = 2.197 for the phrase that names it.
        let fired = t.fired(&[-2.0, -3.0], &[-3.0, -3.5], &[0.1, 0.9], &[]);
        assert_eq!(fired, vec![hit("dog", "a dog barks", 3.197)]);
        // A low probability counts against it.
        assert!(
            t.fired(&[-1.0, -3.0], &[-3.0, -3.5], &[0.1, 0.1], &[])
                .is_empty()
        );
    }
}
