//! A bundle's graphs loaded into tract: loaded and optimised once, shared by every caption;
//! each caption gets its own [`TractStepper`] for decoding.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tract_onnx::prelude::*;

use super::bundle::{Bundle, BundleError, DType, Dim, StateSpec};
use super::captioner::{Captioner, ModelOutput, decode_window, ms};
use crate::decode::{DecodeParams, Stepper};

type Plan = Arc<TypedRunnableModel>;

/// A loaded, validated model.
pub struct TractModel {
    /// The bundle it came from.
    pub bundle: Bundle,
    /// The parsed encoder; optimised per window length (frames), since concrete shapes
    /// run faster and some exported graphs only resolve their shape arithmetic then.
    encoder: InferenceModel,
    encoder_plans: Mutex<Plans<Plan>>,
    decoder: Plan,
}

/// Encoder plans by window length: the full window's for good (the probe makes it), and
/// the most recent few other lengths (streams shorter than one window). Each plan holds its
/// own packed weights (≈ 17 MB for YAMNet), so the rest are bounded.
struct Plans<P> {
    full: Option<(usize, P)>,
    /// Most recently used last.
    others: Vec<(usize, P)>,
}

impl<P> Default for Plans<P> {
    fn default() -> Self {
        Self {
            full: None,
            others: Vec::new(),
        }
    }
}

impl<P: Clone> Plans<P> {
    /// Other lengths kept: one short file's, and the next one's.
    const OTHERS: usize = 2;

    fn get(&mut self, frames: usize) -> Option<P> {
        if let Some((n, p)) = &self.full
            && *n == frames
        {
            return Some(p.clone());
        }
        let i = self.others.iter().position(|(n, _)| *n == frames)?;
        let entry = self.others.remove(i);
        let plan = entry.1.clone();
        self.others.push(entry);
        Some(plan)
    }

    fn insert(&mut self, frames: usize, plan: P, full: bool) {
        if full {
            self.full = Some((frames, plan));
            return;
        }
        if self.others.len() == Self::OTHERS {
            self.others.remove(0);
        }
        self.others.push((frames, plan));
    }
}

/// The encoder's output for one window.
pub struct TractEncoded {
    memory: Tensor,
    init: Vec<Tensor>,
    /// Each tag head's probabilities, in `manifest.tags` order, then the sound embedding
    /// when the bundle has `[sounds]`.
    vectors: Vec<Vec<f32>>,
}

fn graph_error(file: &str, e: impl std::fmt::Display) -> BundleError {
    BundleError::Graph {
        file: file.to_string(),
        message: e.to_string(),
    }
}

fn datum(dtype: DType) -> DatumType {
    match dtype {
        DType::Float32 => f32::datum_type(),
        DType::Int64 => i64::datum_type(),
    }
}

/// Parses `file` and selects its inputs (names, and facts built from the model's own symbol
/// scope) and outputs. The exporter's own shape annotations are ignored: ours replace them.
fn parse_graph(
    dir: &Path,
    file: &str,
    inputs: &[&str],
    facts: impl FnOnce(&SymbolScope) -> Vec<InferenceFact>,
    outputs: &[&str],
) -> Result<InferenceModel, BundleError> {
    let mut model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
        .model_for_path(dir.join(file))
        .map_err(|e| graph_error(file, format!("not a loadable ONNX model: {e:#}")))?;
    let present: Vec<String> = model
        .input_outlets()
        .map_err(|e| graph_error(file, e))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for name in inputs {
        if !present.iter().any(|p| p == name) {
            return Err(graph_error(
                file,
                format!(
                    "has no input \"{name}\" (its inputs: {})",
                    present.join(", ")
                ),
            ));
        }
    }
    model
        .set_input_names(inputs)
        .map_err(|e| graph_error(file, e))?;
    for (i, fact) in facts(&model.symbols.clone()).into_iter().enumerate() {
        model
            .set_input_fact(i, fact)
            .map_err(|e| graph_error(file, e))?;
    }
    for name in outputs {
        if model.find_outlet_label(name).is_none() {
            return Err(graph_error(file, format!("has no output \"{name}\"")));
        }
    }
    model
        .select_outputs_by_name(outputs.iter())
        .map_err(|e| graph_error(file, e))?;
    Ok(model)
}

/// Optimises a parsed graph into a runnable plan.
fn plan(model: InferenceModel) -> TractResult<Plan> {
    model.into_optimized()?.into_runnable()
}

/// Converts a declared state shape into a tract fact (`batch` → B, `steps` → S).
fn state_fact(spec: &StateSpec, batch: &TDim, steps: &TDim) -> InferenceFact {
    let dims: TVec<TDim> = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => (*n).into(),
            Dim::Named(n) if n == "batch" => batch.clone(),
            Dim::Named(_) => steps.clone(),
        })
        .collect();
    InferenceFact::dt_shape(datum(spec.dtype), dims)
}

/// Gathers `rows` of `t` along `axis` (beam reordering, batch tiling).
fn gather(t: &Tensor, axis: usize, rows: &[usize]) -> TractResult<Tensor> {
    Ok(match t.datum_type() {
        dt if dt == i64::datum_type() => t
            .to_plain_array_view::<i64>()?
            .select(tract_ndarray::Axis(axis), rows)
            .into(),
        _ => t
            .to_plain_array_view::<f32>()?
            .select(tract_ndarray::Axis(axis), rows)
            .into(),
    })
}

impl TractModel {
    /// Opens, checks and loads the bundle in `dir`, then probes both graphs once so that
    /// shape, dtype and vocabulary mismatches are reported now, not mid-caption.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;

        let mut enc_outputs: Vec<&str> = vec![&m.encoder.memory];
        enc_outputs.extend(m.decoder.states.iter().map(|s| s.init_output.as_str()));
        enc_outputs.extend(m.tags.iter().map(|t| t.output.as_str()));
        enc_outputs.extend(m.sounds.iter().map(|s| s.output.as_str()));
        let mel_fact = |_: &SymbolScope| vec![InferenceFact::dt(f32::datum_type())];
        let encoder = parse_graph(
            dir,
            &m.encoder.file,
            &[&m.encoder.input],
            mel_fact,
            &enc_outputs,
        )?;

        let mut dec_inputs: Vec<&str> = vec![&m.decoder.tokens, &m.decoder.memory];
        dec_inputs.extend(m.decoder.states.iter().map(|s| s.input.as_str()));
        let dec_facts = |sym: &SymbolScope| {
            let (batch, steps) = (sym.sym("batch").to_dim(), sym.sym("steps").to_dim());
            let memory_shape = tvec![batch.clone(), steps.clone(), m.encoder.memory_dim.to_dim()];
            let mut facts = vec![
                InferenceFact::dt_shape(i64::datum_type(), tvec![batch.clone()]),
                InferenceFact::dt_shape(f32::datum_type(), memory_shape),
            ];
            facts.extend(
                m.decoder
                    .states
                    .iter()
                    .map(|s| state_fact(s, &batch, &steps)),
            );
            facts
        };
        let mut dec_outputs: Vec<&str> = vec![&m.decoder.logits];
        dec_outputs.extend(m.decoder.states.iter().map(|s| s.output.as_str()));
        let decoder = parse_graph(dir, &m.decoder.file, &dec_inputs, dec_facts, &dec_outputs)
            .and_then(|g| {
                plan(g).map_err(|e| {
                    // Planned with the manifest's memory_dim and state shapes: the usual cause.
                    graph_error(
                        &m.decoder.file,
                        format!(
                            "cannot be prepared for inference with hark-model.toml's \
                             [encoder] memory_dim = {} and [[decoder.states]] shapes (do they \
                             match the graphs?): {e:#}",
                            m.encoder.memory_dim
                        ),
                    )
                })
            })?;

        let model = Self {
            bundle,
            encoder,
            encoder_plans: Mutex::default(),
            decoder,
        };
        model.probe()?;
        Ok(model)
    }

    /// Runs one window of silence through the encoder and one decoder step, checking every
    /// declared shape and the logits width against the vocabulary.
    // Long on purpose: one probe run, then one check per declared output, each naming the
    // graph, the output and both shapes.
    fn probe(&self) -> Result<(), BundleError> {
        let m = &self.bundle.manifest;
        // A full window, so the encoder plan optimised here is the one live windows reuse.
        let (frames, _) = m.window_frames();
        let enc_file = &m.encoder.file;
        let dec_file = &m.decoder.file;
        let encoded = self
            .encode(&vec![0.0; frames * m.frontend.n_mels])
            .map_err(|e| graph_error(enc_file, format!("fails on a window of silence: {e:#}")))?;
        let mshape = encoded.memory.shape();
        if mshape.len() != 3 || mshape[0] != 1 || mshape[2] != m.encoder.memory_dim {
            return Err(graph_error(
                enc_file,
                format!(
                    "output \"{}\" has shape {mshape:?}, but hark-model.toml's [encoder] \
                     memory_dim = {} expects [1, steps, {}]",
                    m.encoder.memory, m.encoder.memory_dim, m.encoder.memory_dim
                ),
            ));
        }
        let steps = mshape[1];
        let expect = |spec: &StateSpec, batch: usize| -> Vec<usize> {
            spec.shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Named(n) if n == "batch" => batch,
                    Dim::Named(_) => steps,
                })
                .collect()
        };
        for (spec, t) in m.decoder.states.iter().zip(&encoded.init) {
            if t.shape() != expect(spec, 1).as_slice() || t.datum_type() != datum(spec.dtype) {
                return Err(graph_error(
                    enc_file,
                    format!(
                        "output \"{}\" (initial {}) is {:?} {:?}, but decoder.states declares {:?} {:?} (batch 1)",
                        spec.init_output,
                        spec.name,
                        t.datum_type(),
                        t.shape(),
                        datum(spec.dtype),
                        expect(spec, 1)
                    ),
                ));
            }
        }
        if let Some(s) = &m.sounds {
            let e = encoded.vectors.get(m.tags.len()).map_or(0, Vec::len);
            if e != s.dim {
                return Err(graph_error(
                    enc_file,
                    format!(
                        "output \"{}\" has {e} values but [sounds] dim = {}",
                        s.output, s.dim
                    ),
                ));
            }
        }
        for ((spec, labels), probs) in m.tags.iter().zip(&self.bundle.labels).zip(&encoded.vectors)
        {
            if probs.len() != labels.len() {
                return Err(graph_error(
                    enc_file,
                    format!(
                        "output \"{}\" has {} values but {} lists {} labels",
                        spec.output,
                        probs.len(),
                        spec.labels,
                        labels.len()
                    ),
                ));
            }
            if let Some(p) = probs.iter().find(|p| !(0.0..=1.0).contains(*p)) {
                return Err(graph_error(
                    enc_file,
                    format!(
                        "output \"{}\" holds {p}, not a probability: export the tag head with its sigmoid",
                        spec.output
                    ),
                ));
            }
        }
        let mut stepper = self.stepper(&encoded);
        let mut state = stepper.init(2).map_err(|e| graph_error(dec_file, e))?;
        let bos = m.tokens.bos;
        let logits = stepper
            .step(&[bos, bos], &mut state)
            .map_err(|e| graph_error(dec_file, format!("fails on a first step: {e:#}")))?;
        let vocab = self.bundle.vocab.len();
        if logits.len() != 2 * vocab {
            return Err(graph_error(
                dec_file,
                format!(
                    "output \"{}\" has {} values per hypothesis but {} has {vocab} tokens",
                    m.decoder.logits,
                    logits.len() / 2,
                    m.tokens.vocab
                ),
            ));
        }
        for (spec, t) in m.decoder.states.iter().zip(&state) {
            if t.shape() != expect(spec, 2).as_slice() || t.datum_type() != datum(spec.dtype) {
                return Err(graph_error(
                    dec_file,
                    format!(
                        "output \"{}\" is {:?} {:?}, but decoder.states declares {:?} {:?} (batch 2)",
                        spec.output,
                        t.datum_type(),
                        t.shape(),
                        datum(spec.dtype),
                        expect(spec, 2)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Runs the encoder on a frame-major log-mel (`frames × n_mels`, already normalised).
    pub fn encode(&self, mel: &[f32]) -> TractResult<TractEncoded> {
        let m = &self.bundle.manifest;
        let n_mels = m.frontend.n_mels;
        let frames = mel.len() / n_mels;
        let input = super::captioner::bands_major(mel, n_mels);
        let input = Tensor::from_shape(&[1, n_mels, frames], &input)?;
        let mut out = self
            .encoder_plan(frames)?
            .run(tvec![input.into_tvalue()])?
            .into_iter();
        let memory = out
            .next()
            .context("encoder returned no memory")?
            .into_tensor();
        let n_states = m.decoder.states.len();
        let init: Vec<Tensor> = out
            .by_ref()
            .take(n_states)
            .map(|v| v.into_tensor())
            .collect();
        let vectors = out
            .map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()))
            .collect::<TractResult<_>>()?;
        Ok(TractEncoded {
            memory,
            init,
            vectors,
        })
    }

    /// The encoder optimised for windows of `frames` frames, built on first use.
    fn encoder_plan(&self, frames: usize) -> TractResult<Plan> {
        // A poisoned lock only means another caption panicked; the cache is still valid.
        let mut plans = self.encoder_plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(frames) {
            return Ok(p);
        }
        let n_mels = self.bundle.manifest.frontend.n_mels;
        let fact = f32::fact([1, n_mels, frames]);
        let p = plan(self.encoder.clone().with_input_fact(0, fact.into())?)?;
        plans.insert(
            frames,
            p.clone(),
            frames == self.bundle.manifest.window_frames().0,
        );
        Ok(p)
    }

    /// Each tag head's probabilities for the window, in `manifest.tags` order, then its
    /// sound embedding when the bundle has `[sounds]`.
    pub fn vectors<'a>(&self, encoded: &'a TractEncoded) -> &'a [Vec<f32>] {
        &encoded.vectors
    }

    /// A decoding session over one encoded window.
    pub fn stepper<'a>(&'a self, encoded: &'a TractEncoded) -> TractStepper<'a> {
        TractStepper {
            model: self,
            encoded,
            tiled: None,
        }
    }
}

/// [`Stepper`] over the bundle's decoder graph.
pub struct TractStepper<'a> {
    model: &'a TractModel,
    encoded: &'a TractEncoded,
    /// The memory tiled to the last batch size used.
    tiled: Option<(usize, TValue)>,
}

impl Stepper for TractStepper<'_> {
    type State = Vec<Tensor>;

    fn init(&mut self, batch: usize) -> anyhow::Result<Self::State> {
        let rows = vec![0; batch];
        let states = &self.model.bundle.manifest.decoder.states;
        states
            .iter()
            .zip(&self.encoded.init)
            .map(|(spec, t)| gather(t, spec.batch_axis, &rows))
            .collect()
    }

    fn step(&mut self, tokens: &[u32], state: &mut Self::State) -> anyhow::Result<Vec<f32>> {
        let batch = tokens.len();
        if self.tiled.as_ref().map(|(b, _)| *b) != Some(batch) {
            let memory = gather(&self.encoded.memory, 0, &vec![0; batch])?;
            self.tiled = Some((batch, memory.into_tvalue()));
        }
        let memory = self
            .tiled
            .as_ref()
            .map(|(_, m)| m.clone())
            .expect("tiled above");
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let mut inputs: TVec<TValue> =
            tvec![Tensor::from_shape(&[batch], &ids)?.into_tvalue(), memory];
        inputs.extend(state.drain(..).map(Tensor::into_tvalue));
        let mut out = self.model.decoder.run(inputs)?.into_iter();
        let logits = out.next().context("decoder returned no logits")?;
        let logits = logits
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        state.extend(out.map(|v| v.into_tensor()));
        Ok(logits)
    }

    fn select(&mut self, state: &Self::State, rows: &[usize]) -> anyhow::Result<Self::State> {
        let states = &self.model.bundle.manifest.decoder.states;
        states
            .iter()
            .zip(state)
            .map(|(spec, t)| gather(t, spec.batch_axis, rows))
            .collect()
    }

    fn vocab(&self) -> usize {
        self.model.bundle.vocab.len()
    }
}

impl Captioner for TractModel {
    fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn caption_mel(
        &self,
        mel: &[f32],
        params: &DecodeParams,
        phrases: &[Vec<u32>],
    ) -> anyhow::Result<ModelOutput> {
        let t0 = Instant::now();
        let encoded = self
            .encode(mel)
            .map_err(|e| anyhow::anyhow!("encoder failed: {e:#}"))?;
        let encoder_ms = ms(t0);
        let vectors = self.vectors(&encoded).to_vec();
        decode_window(
            &self.bundle,
            &mut self.stepper(&encoded),
            params,
            encoder_ms,
            vectors,
            phrases,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Plans;

    #[test]
    fn the_full_window_plan_stays_and_other_lengths_are_bounded() {
        let mut plans = Plans::default();
        plans.insert(1000, "full", true);
        for n in [10, 20, 30] {
            plans.insert(n, "tail", false);
        }
        assert_eq!(plans.get(1000), Some("full"));
        // The oldest other length went when the third came.
        assert_eq!(plans.get(10), None);
        assert_eq!(plans.get(20), Some("tail"));
        // 20 was just used: 30 is now the oldest and goes first.
        plans.insert(40, "tail", false);
        assert_eq!(plans.get(30), None);
        assert!(plans.get(20).is_some() && plans.get(40).is_some());
        assert_eq!(plans.others.len(), Plans::<&str>::OTHERS);
    }
}
