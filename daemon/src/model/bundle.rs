//! The model bundle manifest (docs/BUNDLE.md): parsed, then checked file by file, so every
//! defect is reported with the file and the field it is in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::decode::{DecodeParams, SpecialTokens};
use dsp::FrontendConfig;

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "hark-model.toml";

/// The only format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a bundle cannot be used. Every message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not as a source: printed once).
        error: std::io::Error,
    },
    /// The manifest is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong (the TOML error names the key and line).
        message: String,
    },
    /// A different format version.
    #[error(
        "{MANIFEST}: format_version = {found}, but this hark reads version {FORMAT_VERSION}; export the model again with a matching hark-export"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// A referenced file is absent.
    #[error("{field} = \"{file}\", but the bundle has no such file")]
    MissingFile {
        /// Manifest field referring to it.
        field: String,
        /// The file name.
        file: String,
    },
    /// A file is not listed in `[files]`.
    #[error("{MANIFEST}: [files] has no sha256 for \"{file}\"")]
    Unlisted {
        /// The file name.
        file: String,
    },
    /// A file's content does not match its recorded hash.
    #[error(
        "{file}: sha256 is {actual} but [files] in {MANIFEST} says {expected}; the bundle is corrupted or was edited — export it again"
    )]
    Hash {
        /// The file name.
        file: String,
        /// Hash from the manifest.
        expected: String,
        /// Hash of the file.
        actual: String,
    },
    /// `[frontend]` is not computable by `dsp` (in the message, not as a source: printed once).
    #[error("{MANIFEST}: {0}")]
    Frontend(dsp::ConfigError),
    /// The default decoding parameters are invalid (in the message, not as a source).
    #[error("{MANIFEST}: {0}")]
    Decoding(crate::decode::ParamError),
    /// A field's value is invalid.
    #[error("{MANIFEST}: {field}: {message}")]
    Field {
        /// The field, e.g. `tokens.eos`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An ONNX graph does not load or does not honour the declared interface.
    #[error("{file}: {message}")]
    Graph {
        /// The graph file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// One dimension of a declared shape: fixed, or a named dynamic axis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// `"batch"` or `"steps"`.
    Named(String),
}

/// Element type of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    Float32,
    /// 64-bit integer.
    Int64,
}

/// A decoder state (recurrent state, KV cache, step counter …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Human-readable name.
    pub name: String,
    /// Decoder input name.
    pub input: String,
    /// Decoder output name (the value after the step).
    pub output: String,
    /// Encoder output holding the initial value (batch 1).
    pub init_output: String,
    /// Shape; `"batch"` and `"steps"` are the dynamic axes.
    pub shape: Vec<Dim>,
    /// Axis that beam search reorders.
    pub batch_axis: usize,
    /// Element type.
    pub dtype: DType,
}

/// `[window]`: how much audio one caption covers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Audio per caption window, seconds.
    pub seconds: f32,
    /// Default hop between windows, seconds.
    pub hop_seconds: f32,
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Vocabulary file.
    pub vocab: String,
    /// Padding id.
    pub pad: u32,
    /// Start id.
    pub bos: u32,
    /// End id.
    pub eos: u32,
    /// Unknown-word id.
    pub unk: u32,
    /// Most generated tokens.
    pub max_len: usize,
}

/// `[encoder]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// ONNX file.
    pub file: String,
    /// Log-mel input name.
    pub input: String,
    /// Memory output name.
    pub memory: String,
    /// Memory feature size.
    pub memory_dim: usize,
}

/// `[decoder]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderSpec {
    /// ONNX file.
    pub file: String,
    /// Token input name.
    pub tokens: String,
    /// Memory input name.
    pub memory: String,
    /// Logits output name.
    pub logits: String,
    /// States, in the decoder's input order.
    #[serde(default)]
    pub states: Vec<StateSpec>,
}

/// One `[[tags]]` entry: a clip-level tag head, an extra encoder output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSpec {
    /// The tag source named in every published tag (e.g. `hark`, `audioset`).
    pub name: String,
    /// Labels file, one per line, in the output's order.
    pub labels: String,
    /// Encoder output with one probability per label, `[1, n_labels]`.
    pub output: String,
    /// Default publishing threshold (the config's `tags.thresholds` overrides it).
    #[serde(default = "default_tag_threshold")]
    pub threshold: f32,
}

const fn default_tag_threshold() -> f32 {
    0.5
}

/// `[triggers]`: how this model's trigger scores are read, as calibrated on held-out
/// recordings (export/scripts/calibrate_triggers.py --write-bundle). A bundle without it gets
/// the daemon's defaults, which were calibrated on an earlier default model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The score at or above which a trigger fires unless it sets its own.
    pub threshold: Option<f32>,
    /// Weight of the tag head's log-odds in the score of a phrase naming one of its labels.
    pub tag_weight: Option<f32>,
    /// Added to a phrase's score when the window's caption or an alternative says it.
    pub caption_weight: Option<f32>,
    /// Groups of words that name one sound ("glass", "shatters", "window"): a phrase's word
    /// is said by a caption holding any word of its groups.
    #[serde(default)]
    pub synonyms: Vec<Vec<String>>,
}

/// `[sounds]`: what learned sounds need besides the encoder's sound embedding, computed by
/// `hark-sounds-reference` on a corpus: the train clips' mean embedding, negatives for the
/// probe and a default threshold per number of examples (docs/SOUNDS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundSpec {
    /// Encoder output with the window's embedding, `[1, dim]`.
    pub output: String,
    /// Little-endian float32 rows of `dim`: the mean, then the negatives (centred, unit
    /// length).
    pub file: String,
    /// Embedding width.
    pub dim: usize,
    /// Encoder blocks side by side in the embedding, each scaled to unit length on its own
    /// after centring (default 1).
    #[serde(default = "one")]
    pub parts: usize,
    /// Rows of negatives after the mean.
    pub negatives: usize,
    /// The probe's weight decay.
    pub probe_l2: f64,
    /// Example counts the thresholds were calibrated for, ascending from 1.
    pub examples: Vec<usize>,
    /// The default threshold for each count.
    pub thresholds: Vec<f32>,
}

fn one() -> usize {
    1
}

/// `[sounds]` read: the reference learned sounds are fitted and scored against.
#[derive(Debug, Clone, PartialEq)]
pub struct SoundReference {
    /// The train clips' mean embedding, subtracted before scaling to unit length.
    pub mean: Vec<f32>,
    /// Equal slices of the embedding scaled to unit length one by one (`sounds::probe::centred`).
    pub parts: usize,
    /// Negatives for the probe, centred as `sounds::probe::centred` does.
    pub negatives: Vec<Vec<f32>>,
    /// The probe's weight decay.
    pub probe_l2: f64,
    /// (example count, default threshold), ascending.
    pub thresholds: Vec<(usize, f32)>,
}

impl SoundReference {
    /// The default threshold for `examples` examples: that of the largest calibrated count
    /// not above it.
    pub fn threshold(&self, examples: usize) -> f32 {
        self.thresholds
            .iter()
            .rev()
            .find(|(k, _)| *k <= examples)
            .or(self.thresholds.first())
            .map_or(0.5, |(_, t)| *t)
    }
}

/// `[torchscript]`: the graphs traced to TorchScript, run by a `tch` build (fp32 bundles).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchScriptSpec {
    /// The encoder twin: same inputs and outputs as `encoder.file`.
    pub encoder: String,
    /// The one-step decoder twin: same inputs and outputs as `decoder.file`.
    pub decoder: String,
}

/// The parsed `hark-model.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version.
    pub format_version: u32,
    /// Model name, reported in every caption.
    pub name: String,
    /// Architecture, informational.
    pub architecture: String,
    /// Licence of the weights.
    pub licence: String,
    /// What it was trained on.
    pub training_data: String,
    /// Exporter and version.
    pub created_by: String,
    /// The front end the model was trained with.
    pub frontend: FrontendConfig,
    /// Caption window.
    pub window: WindowSpec,
    /// Special tokens and vocabulary.
    pub tokens: TokenSpec,
    /// Encoder graph.
    pub encoder: EncoderSpec,
    /// Decoder graph.
    pub decoder: DecoderSpec,
    /// Default decoding.
    pub decoding: DecodeParams,
    /// Clip-level tag heads, if any.
    #[serde(default)]
    pub tags: Vec<TagSpec>,
    /// Trigger calibration (optional).
    #[serde(default)]
    pub triggers: TriggerSpec,
    /// Learned sounds' reference (optional: without it, the bundle cannot learn sounds).
    pub sounds: Option<SoundSpec>,
    /// Optional TorchScript twin of the graphs.
    pub torchscript: Option<TorchScriptSpec>,
    /// sha256 of every file.
    pub files: BTreeMap<String, String>,
    /// Evaluation results.
    #[serde(default)]
    pub metrics: BTreeMap<String, toml::Value>,
}

impl Manifest {
    /// Log-mel frames per second of audio.
    pub fn frames_per_second(&self) -> f32 {
        self.frontend.sample_rate as f32 / self.frontend.hop_length as f32
    }

    /// Log-mel frames in `seconds` of audio (at least one).
    pub fn frames(&self, seconds: f32) -> usize {
        ((seconds * self.frames_per_second()).round() as usize).max(1)
    }

    /// Frames in one caption window and between window starts.
    pub fn window_frames(&self) -> (usize, usize) {
        (
            self.frames(self.window.seconds),
            self.frames(self.window.hop_seconds),
        )
    }
}

/// A bundle whose manifest, files and hashes have been checked (graphs not yet loaded).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Its manifest.
    pub manifest: Manifest,
    /// Token strings by id.
    pub vocab: Vec<String>,
    /// The labels of each tag head, in `manifest.tags` order.
    pub labels: Vec<Vec<String>>,
    /// Learned sounds' reference, when the manifest has `[sounds]`.
    pub sounds: Option<SoundReference>,
}

fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|error| BundleError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Why a phrase (a trigger's or `--trigger`'s) cannot be scored by this model.
#[derive(Debug, thiserror::Error)]
pub enum PhraseError {
    /// Nothing left after normalisation.
    #[error("phrase {phrase} has no words")]
    Empty {
        /// The phrase as given (quoted, at most 80 characters).
        phrase: String,
    },
    /// Longer than any caption the model writes.
    #[error("phrase {phrase} has {words} words; the model's captions have at most {max}")]
    TooLong {
        /// The phrase as given (quoted, at most 80 characters).
        phrase: String,
        /// Its word count.
        words: usize,
        /// The most a caption has (`tokens.max_len` less the end token).
        max: usize,
    },
    /// A control character (a tab, a newline, ...), which a phrase of words never holds.
    #[error("phrase {phrase} holds the control character U+{code:04X}; use words and spaces")]
    Control {
        /// The phrase as given (quoted, at most 80 characters).
        phrase: String,
        /// The character's code point.
        code: u32,
    },
    /// A word outside the vocabulary.
    #[error(
        "phrase {phrase}: the model does not know the word {word} (its {known} words are in {vocab_file})"
    )]
    UnknownWord {
        /// The phrase as given (quoted, at most 80 characters).
        phrase: String,
        /// The unknown word as typed (quoted).
        word: String,
        /// Vocabulary size.
        known: usize,
        /// The bundle's vocabulary file.
        vocab_file: String,
    },
}

fn field(field: &str, message: impl Into<String>) -> BundleError {
    BundleError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The manifest of the bundle in `dir`: UTF-8 TOML of this format version.
fn parse(dir: &Path) -> Result<Manifest, BundleError> {
    let manifest_path = dir.join(MANIFEST);
    let text = String::from_utf8(read(&manifest_path)?).map_err(|_| BundleError::Manifest {
        path: manifest_path.clone(),
        message: "not UTF-8 text".into(),
    })?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| BundleError::Manifest {
        path: manifest_path.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(BundleError::Version {
            found: manifest.format_version,
        });
    }
    Ok(manifest)
}

/// Every file the manifest names is a plain name inside `dir`, present, listed in `files`,
/// and every listed file has its sha256.
fn check_files(dir: &Path, m: &Manifest) -> Result<(), BundleError> {
    let mut referenced = vec![
        ("encoder.file", &m.encoder.file),
        ("decoder.file", &m.decoder.file),
        ("tokens.vocab", &m.tokens.vocab),
    ];
    for tags in &m.tags {
        referenced.push(("tags.labels", &tags.labels));
    }
    if let Some(s) = &m.sounds {
        referenced.push(("sounds.file", &s.file));
    }
    if let Some(ts) = &m.torchscript {
        referenced.push(("torchscript.encoder", &ts.encoder));
        referenced.push(("torchscript.decoder", &ts.decoder));
    }
    // Every file is a plain name inside the bundle's folder: a manifest must not make
    // hark read (and hash, and report on) /etc/… or another folder's files.
    for (name, file) in referenced
        .iter()
        .map(|(n, f)| (n.to_string(), f.as_str()))
        .chain(
            m.files
                .keys()
                .map(|f| (format!("files.\"{f}\""), f.as_str())),
        )
    {
        let plain = std::path::Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || !plain {
            return Err(field(
                &name,
                format!("{file:?}: must name a file inside the bundle's folder (no '/…' or '..')"),
            ));
        }
    }
    for (name, file) in &referenced {
        if !dir.join(file).is_file() {
            return Err(BundleError::MissingFile {
                field: name.to_string(),
                file: file.to_string(),
            });
        }
        if !m.files.contains_key(*file) {
            return Err(BundleError::Unlisted {
                file: file.to_string(),
            });
        }
    }
    for (file, expected) in &m.files {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(BundleError::MissingFile {
                field: format!("files.\"{file}\""),
                file: file.clone(),
            });
        }
        let actual = format!("{:x}", Sha256::digest(read(&path)?));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(BundleError::Hash {
                file: file.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// The lines of a UTF-8 text file of the bundle.
fn lines(dir: &Path, file: &str) -> Result<Vec<String>, BundleError> {
    let bytes = read(&dir.join(file))?;
    let text = String::from_utf8(bytes).map_err(|_| field(file, "not UTF-8 text"))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Token ids inside the vocabulary; decoding defaults and the window within their ranges.
fn check_tokens(m: &Manifest, vocab: &[String]) -> Result<(), BundleError> {
    for (name, id) in [
        ("pad", m.tokens.pad),
        ("bos", m.tokens.bos),
        ("eos", m.tokens.eos),
        ("unk", m.tokens.unk),
    ] {
        if id as usize >= vocab.len() {
            return Err(field(
                &format!("tokens.{name}"),
                format!(
                    "id {id} is outside the vocabulary ({} tokens in {})",
                    vocab.len(),
                    m.tokens.vocab
                ),
            ));
        }
    }
    if m.tokens.max_len == 0 {
        return Err(field("tokens.max_len", "must be at least 1"));
    }
    if let Some(t) = m.triggers.threshold
        && !t.is_finite()
    {
        return Err(field("triggers.threshold", "must be a finite number"));
    }
    if let Some(w) = m.triggers.tag_weight
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(field("triggers.tag_weight", "must be a finite number >= 0"));
    }
    if let Some(w) = m.triggers.caption_weight
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(field(
            "triggers.caption_weight",
            "must be a finite number >= 0",
        ));
    }
    if m.triggers.synonyms.iter().any(|group| {
        group.is_empty()
            || group
                .iter()
                .any(|w| w.is_empty() || w.chars().any(|c| c.is_whitespace() || c.is_uppercase()))
    }) {
        return Err(field(
            "triggers.synonyms",
            "each group must hold words, lowercase and without spaces",
        ));
    }
    m.decoding
        .validate_for(m.tokens.max_len)
        .map_err(BundleError::Decoding)?;
    if !(m.window.seconds > 0.0 && m.window.seconds <= 600.0) {
        return Err(field("window.seconds", "must be in (0, 600]"));
    }
    if !(m.window.hop_seconds > 0.0 && m.window.hop_seconds <= m.window.seconds) {
        return Err(field(
            "window.hop_seconds",
            "must be in (0, window.seconds]",
        ));
    }
    Ok(())
}

/// Each decoder state's batch axis is its "batch" entry and its dynamic axes are known.
fn check_states(m: &Manifest) -> Result<(), BundleError> {
    for (i, s) in m.decoder.states.iter().enumerate() {
        let at = format!("decoder.states[{i}] ({})", s.name);
        if s.batch_axis >= s.shape.len() || s.shape[s.batch_axis] != Dim::Named("batch".into()) {
            return Err(field(
                &at,
                format!(
                    "batch_axis = {} must index the \"batch\" entry of shape",
                    s.batch_axis
                ),
            ));
        }
        for d in &s.shape {
            if let Dim::Named(n) = d
                && n != "batch"
                && n != "steps"
            {
                let msg =
                    format!("unknown dynamic axis \"{n}\" in shape; use \"batch\" or \"steps\"");
                return Err(field(&at, msg));
            }
        }
    }
    Ok(())
}

/// Each tag head's labels: unique non-empty names, thresholds in (0, 1), one label per line.
fn tag_labels(dir: &Path, m: &Manifest) -> Result<Vec<Vec<String>>, BundleError> {
    let mut labels = Vec::new();
    for (i, t) in m.tags.iter().enumerate() {
        let at = format!("tags[{i}] ({})", t.name);
        if t.name.is_empty() || m.tags[..i].iter().any(|o| o.name == t.name) {
            return Err(field(&at, "name must be non-empty and unique"));
        }
        if !(t.threshold > 0.0 && t.threshold < 1.0) {
            return Err(field(&at, "threshold must be in (0, 1)"));
        }
        let l = lines(dir, &t.labels)?;
        if l.is_empty() || l.iter().any(|x| x.trim().is_empty()) {
            return Err(field(
                &at,
                format!("{} must list one label per line", t.labels),
            ));
        }
        labels.push(l);
    }
    Ok(labels)
}

/// `[sounds]`'s reference file: (1 + negatives) rows of `dim` finite values; thresholds in
/// (0, 1), one per example count, counts ascending from 1.
fn sound_reference(dir: &Path, m: &Manifest) -> Result<Option<SoundReference>, BundleError> {
    let Some(s) = &m.sounds else {
        return Ok(None);
    };
    let bytes = read(&dir.join(&s.file))?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rows = 1 + s.negatives;
    if s.dim == 0 || s.negatives == 0 || bytes.len() != 4 * rows * s.dim {
        return Err(field(
            "sounds",
            format!(
                "{} holds {} bytes, expected (1 + negatives) x dim float32 = (1 + {}) x {} x 4",
                s.file,
                bytes.len(),
                s.negatives,
                s.dim
            ),
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(field(
            "sounds",
            format!("{} holds a value that is not finite", s.file),
        ));
    }
    let ascending = s.examples.first() == Some(&1) && s.examples.windows(2).all(|w| w[0] < w[1]);
    if !ascending || s.examples.len() != s.thresholds.len() {
        return Err(field(
            "sounds.examples",
            "must ascend from 1, one per threshold",
        ));
    }
    if s.thresholds.iter().any(|t| !(*t > 0.0 && *t < 1.0)) {
        return Err(field("sounds.thresholds", "must be in (0, 1)"));
    }
    if s.parts == 0 || s.dim % s.parts != 0 {
        return Err(field(
            "sounds.parts",
            format!("must be at least 1 and divide dim ({})", s.dim),
        ));
    }
    if !(s.probe_l2.is_finite() && (0.0..10.0).contains(&s.probe_l2)) {
        return Err(field("sounds.probe_l2", "must be in [0, 10)"));
    }
    let mut rows = values.chunks_exact(s.dim).map(<[f32]>::to_vec);
    Ok(Some(SoundReference {
        mean: rows.next().unwrap_or_default(),
        parts: s.parts,
        negatives: rows.collect(),
        probe_l2: s.probe_l2,
        thresholds: s
            .examples
            .iter()
            .copied()
            .zip(s.thresholds.iter().copied())
            .collect(),
    }))
}

/// `text` quoted for a message, cut to its first 80 characters: a 10,000-character phrase
/// must not fill a log line.
fn quoted(text: &str) -> String {
    let mut cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

impl Bundle {
    /// Reads and checks the bundle in `dir`: manifest schema and version, every referenced
    /// file present and hashed, front end, token ids, decoding defaults, state declarations,
    /// tag heads. Each step is one function below, in that order.
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let manifest = parse(dir)?;
        let m = &manifest;
        check_files(dir, m)?;
        m.frontend.validate().map_err(BundleError::Frontend)?;
        let vocab = lines(dir, &m.tokens.vocab)?;
        check_tokens(m, &vocab)?;
        check_states(m)?;
        let labels = tag_labels(dir, m)?;
        let sounds = sound_reference(dir, m)?;
        Ok(Self {
            manifest,
            vocab,
            labels,
            sounds,
        })
    }

    /// One line describing the model, for the log.
    pub fn describe(&self) -> String {
        let m = &self.manifest;
        let metrics: Vec<String> = m
            .metrics
            .iter()
            .map(|(k, v)| match v.as_float() {
                Some(f) => format!("{k}={f:.3}"),
                None => format!("{k}={v}"),
            })
            .collect();
        format!(
            "model {} ({}, licence {}) trained on {}, made by {}; metrics: {}",
            m.name,
            m.architecture,
            m.licence,
            m.training_data,
            m.created_by,
            if metrics.is_empty() {
                "none recorded".to_string()
            } else {
                metrics.join(", ")
            }
        )
    }

    /// The special token ids for decoding.
    pub fn special(&self) -> SpecialTokens {
        let t = &self.manifest.tokens;
        SpecialTokens {
            bos: t.bos,
            eos: t.eos,
            pad: t.pad,
        }
    }

    /// A phrase as token ids, normalised as the trainer normalises captions (lower case, then
    /// anything but a-z, 0-9 and inner apostrophes a space); a word the model never learnt is
    /// an error naming the word as it was typed, and a control character is refused.
    pub fn phrase_tokens(&self, phrase: &str) -> Result<Vec<u32>, PhraseError> {
        if let Some(c) = phrase.chars().find(|c| c.is_control()) {
            return Err(PhraseError::Control {
                phrase: quoted(phrase),
                code: c as u32,
            });
        }
        // (as typed, as the model reads it): "Dog's," -> "dog's"; "ünïcödé" -> "n", "c", "d".
        let mut words: Vec<(&str, String)> = Vec::new();
        for typed in phrase.split_whitespace() {
            let cleaned: String = typed
                .to_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '\'' {
                        c
                    } else {
                        ' '
                    }
                })
                .collect();
            words.extend(
                cleaned
                    .split_whitespace()
                    .map(|w| w.trim_matches('\''))
                    .filter(|w| !w.is_empty())
                    .map(|w| (typed, w.to_string())),
            );
        }
        if words.is_empty() {
            return Err(PhraseError::Empty {
                phrase: quoted(phrase),
            });
        }
        let max = self.manifest.tokens.max_len.saturating_sub(1).max(1);
        if words.len() > max {
            return Err(PhraseError::TooLong {
                phrase: quoted(phrase),
                words: words.len(),
                max,
            });
        }
        words
            .iter()
            .map(|(typed, w)| {
                self.vocab
                    .iter()
                    .position(|v| v == w)
                    .map(|i| i as u32)
                    .ok_or_else(|| PhraseError::UnknownWord {
                        phrase: quoted(phrase),
                        word: quoted(typed),
                        known: self.vocab.len(),
                        vocab_file: self.manifest.tokens.vocab.clone(),
                    })
            })
            .collect()
    }

    /// Joins token ids into a caption (special tokens dropped).
    pub fn text(&self, tokens: &[u32]) -> String {
        let t = &self.manifest.tokens;
        tokens
            .iter()
            .filter(|&&id| id != t.pad && id != t.bos && id != t.eos)
            .filter_map(|&id| self.vocab.get(id as usize).map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where the shipped default bundle is looked for, in order.
pub fn default_bundle_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // An installed layout: <prefix>/bin/hark and <prefix>/share/hark/model.
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            dirs.push(prefix.join("share/hark/model"));
        }
    }
    dirs.push(PathBuf::from("/usr/share/hark/model"));
    // A build from the repository.
    dirs.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/model"
    )));
    dirs
}

/// The bundle directory to use: `explicit`, else the first default that exists.
pub fn resolve_bundle(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = default_bundle_dirs();
    candidates
        .iter()
        .find(|d| d.join(MANIFEST).is_file())
        .cloned()
        .with_context(|| {
            let list: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            format!(
                "no model bundle given and none found at {}; pass --bundle DIR",
                list.join(", ")
            )
        })
}

/// Bundles for the tests of logic that reads only a manifest and word lists (no files, no
/// graphs).
#[cfg(test)]
pub(crate) mod testing {
    use super::{Bundle, Manifest};

    /// A bundle with `vocab` (ids in order), tag heads `tags` (TOML `[[tags]]` tables) with
    /// their `labels`, 10 s windows every 5 s and captions of at most 10 tokens.
    pub fn bundle(vocab: &[&str], tags: &str, labels: Vec<Vec<String>>) -> Bundle {
        let manifest: Manifest = toml::from_str(&format!(
            r#"
            format_version = 1
            name = "t"
            architecture = "t"
            licence = "t"
            training_data = "t"
            created_by = "t"
            [frontend]
            [window]
            seconds = 10.0
            hop_seconds = 5.0
            [tokens]
            vocab = "vocab.txt"
            pad = 0
            bos = 1
            eos = 2
            unk = 3
            max_len = 10
            [encoder]
            file = "e.onnx"
            input = "mel"
            memory = "memory"
            memory_dim = 4
            [decoder]
            file = "d.onnx"
            tokens = "tokens"
            memory = "memory"
            logits = "logits"
            [decoding]
            [files]
            {tags}
            "#
        ))
        .unwrap();
        Bundle {
            manifest,
            vocab: vocab.iter().map(|s| s.to_string()).collect(),
            labels,
            sounds: None,
        }
    }
}
