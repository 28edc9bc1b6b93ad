//! The ort backend (`--features ort`, for benchmarks): a bundle's ONNX graphs run by ONNX
//! Runtime through the `ort` crate, loaded at run time from the library named by
//! `ORT_DYLIB_PATH` (e.g. the one in the pip package `onnxruntime`). Same decoding as the
//! tract backend, one intra-op thread: it tells what the same Rust code gets from another
//! runtime (docs/PERFORMANCE.md). The shipped daemon runs tract.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use super::bundle::{Bundle, DType, StateSpec};
use super::captioner::{Captioner, ModelOutput, decode_window};
use crate::decode::{DecodeParams, Stepper};

/// A bundle's graphs in ONNX Runtime sessions.
pub struct OrtModel {
    bundle: Bundle,
    // `Session::run` takes `&mut self`: one caller at a time.
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    _env: ort::environment::Environment,
}

/// A tensor copied out of ONNX Runtime: its shape and data.
#[derive(Clone)]
struct Array {
    shape: Vec<usize>,
    data: Data,
}

#[derive(Clone)]
enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Array {
    fn read(value: &DynValue, dtype: DType) -> Result<Self> {
        let (shape, data) = match dtype {
            DType::Float32 => {
                let (shape, data) = value.try_extract_tensor::<f32>()?;
                (shape, Data::F32(data.to_vec()))
            }
            DType::Int64 => {
                let (shape, data) = value.try_extract_tensor::<i64>()?;
                (shape, Data::I64(data.to_vec()))
            }
        };
        Ok(Self {
            shape: shape.iter().map(|&d| d as usize).collect(),
            data,
        })
    }

    fn value(&self) -> Result<DynValue> {
        let shape = self.shape.clone();
        Ok(match &self.data {
            Data::F32(d) => Tensor::from_array((shape, d.clone()))?.into_dyn(),
            Data::I64(d) => Tensor::from_array((shape, d.clone()))?.into_dyn(),
        })
    }

    /// `rows` of the tensor along `axis` (beam reordering, batch tiling).
    fn gather(&self, axis: usize, rows: &[usize]) -> Self {
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let n = self.shape[axis];
        fn pick<T: Copy>(d: &[T], outer: usize, n: usize, inner: usize, rows: &[usize]) -> Vec<T> {
            let mut out = Vec::with_capacity(outer * rows.len() * inner);
            for o in 0..outer {
                for &r in rows {
                    let start = (o * n + r) * inner;
                    out.extend_from_slice(&d[start..start + inner]);
                }
            }
            out
        }
        let mut shape = self.shape.clone();
        shape[axis] = rows.len();
        let data = match &self.data {
            Data::F32(d) => Data::F32(pick(d, outer, n, inner, rows)),
            Data::I64(d) => Data::I64(pick(d, outer, n, inner, rows)),
        };
        Self { shape, data }
    }
}

impl OrtModel {
    /// Checks the bundle and opens both graphs with one intra-op thread.
    pub fn load(dir: &Path) -> Result<Self> {
        let bundle = Bundle::open(dir)?;
        let dylib = std::env::var_os("ORT_DYLIB_PATH").context(
            "the ort backend loads ONNX Runtime at run time: set ORT_DYLIB_PATH to its \
             libonnxruntime.so (pip's is in site-packages/onnxruntime/capi/)",
        )?;
        let env = ort::init_from(&dylib)
            .map_err(|e| anyhow!("cannot load {}: {e}", dylib.to_string_lossy()))?
            .with_name("hark")
            .build()?;
        let open = |file: &str| -> Result<Session> {
            Session::builder(&env)?
                .with_intra_threads(1)
                .map_err(|e| anyhow!("{e}"))?
                .with_inter_threads(1)
                .map_err(|e| anyhow!("{e}"))?
                .commit_from_file(dir.join(file))
                .with_context(|| format!("ONNX Runtime cannot load {file}"))
        };
        let encoder = open(&bundle.manifest.encoder.file)?;
        let decoder = open(&bundle.manifest.decoder.file)?;
        Ok(Self {
            bundle,
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
            _env: env,
        })
    }
}

/// The encoder's output for one window: memory and every state's initial value.
struct OrtEncoded {
    memory: Array,
    init: Vec<Array>,
}

impl Captioner for OrtModel {
    fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn caption_mel(
        &self,
        mel: &[f32],
        params: &DecodeParams,
        phrases: &[Vec<u32>],
    ) -> Result<ModelOutput> {
        let m = &self.bundle.manifest;
        let n_mels = m.frontend.n_mels;
        let frames = mel.len() / n_mels;
        let t0 = Instant::now();
        let input = super::captioner::bands_major(mel, n_mels);
        let input = Tensor::from_array((vec![1, n_mels, frames], input))?;
        let mut session = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let out = session
            .run(ort::inputs![m.encoder.input.as_str() => input])
            .context("encoder failed")?;
        let get = |name: &str| out.get(name).with_context(|| format!("no output {name:?}"));
        let memory = Array::read(get(&m.encoder.memory)?, DType::Float32)?;
        let init = m
            .decoder
            .states
            .iter()
            .map(|s| Array::read(get(&s.init_output)?, s.dtype))
            .collect::<Result<Vec<_>>>()?;
        let vectors = m
            .tags
            .iter()
            .map(|t| &t.output)
            .chain(m.sounds.iter().map(|s| &s.output))
            .map(|name| Ok(get(name)?.try_extract_tensor::<f32>()?.1.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        drop(out);
        drop(session);
        let encoder_ms = t0.elapsed().as_secs_f64() * 1e3;
        let encoded = OrtEncoded { memory, init };
        let mut stepper = OrtStepper {
            model: self,
            encoded: &encoded,
            tiled: None,
        };
        decode_window(
            &self.bundle,
            &mut stepper,
            params,
            encoder_ms,
            vectors,
            phrases,
        )
    }
}

/// [`Stepper`] over the decoder session.
struct OrtStepper<'a> {
    model: &'a OrtModel,
    encoded: &'a OrtEncoded,
    /// The memory tiled to the last batch size used.
    tiled: Option<(usize, Array)>,
}

impl OrtStepper<'_> {
    fn specs(&self) -> &[StateSpec] {
        &self.model.bundle.manifest.decoder.states
    }
}

impl Stepper for OrtStepper<'_> {
    type State = Vec<Array>;

    fn init(&mut self, batch: usize) -> Result<Self::State> {
        let encoded = self.encoded;
        self.select(&encoded.init, &vec![0; batch])
    }

    fn step(&mut self, tokens: &[u32], state: &mut Self::State) -> Result<Vec<f32>> {
        let m = &self.model.bundle.manifest;
        let batch = tokens.len();
        if self.tiled.as_ref().map(|(b, _)| *b) != Some(batch) {
            self.tiled = Some((batch, self.encoded.memory.gather(0, &vec![0; batch])));
        }
        let memory = &self.tiled.as_ref().expect("tiled above").1;
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let mut inputs: Vec<(String, DynValue)> = vec![
            (
                m.decoder.tokens.clone(),
                Tensor::from_array((vec![batch], ids))?.into_dyn(),
            ),
            (m.decoder.memory.clone(), memory.value()?),
        ];
        for (spec, s) in self.specs().iter().zip(state.iter()) {
            inputs.push((spec.input.clone(), s.value()?));
        }
        let mut session = self.model.decoder.lock().unwrap_or_else(|e| e.into_inner());
        let out = session.run(inputs).context("decoder failed")?;
        let logits = out
            .get(&m.decoder.logits)
            .context("decoder returned no logits")?
            .try_extract_tensor::<f32>()?
            .1
            .to_vec();
        let next = self
            .specs()
            .iter()
            .map(|s| {
                let v = out
                    .get(&s.output)
                    .with_context(|| format!("no output {:?}", s.output))?;
                Array::read(v, s.dtype)
            })
            .collect::<Result<Vec<_>>>()?;
        *state = next;
        if logits.len() % batch != 0 {
            bail!("logits of {} values for a batch of {batch}", logits.len());
        }
        Ok(logits)
    }

    fn select(&mut self, state: &Self::State, rows: &[usize]) -> Result<Self::State> {
        Ok(self
            .specs()
            .iter()
            .zip(state)
            .map(|(spec, a)| a.gather(spec.batch_axis, rows))
            .collect())
    }

    fn vocab(&self) -> usize {
        self.model.bundle.vocab.len()
    }
}
