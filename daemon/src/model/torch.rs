//! The torch backend (`--features tch`): a bundle's TorchScript twin (`[torchscript]` in the
//! manifest, written by hark-export) run by libtorch — on CUDA when a GPU is visible, as on a
//! Jetson, else on the CPU. Same decoding as the tract backend: only the graphs' runtime
//! differs, so its captions are checked against tract's.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tch::{CModule, Device, IValue, Kind, Tensor};

use super::bundle::{Bundle, BundleError};
use super::captioner::{Captioner, ModelOutput, decode_window};
use crate::decode::{DecodeParams, Stepper};

/// A bundle's TorchScript graphs loaded on one device.
pub struct TorchModel {
    bundle: Bundle,
    device: Device,
    // libtorch modules are not documented as safe to share between threads: one caller at
    // a time (the daemon has one inference thread anyway).
    graphs: Mutex<(CModule, CModule)>,
}

fn tuple(value: IValue, what: &str) -> Result<Vec<Tensor>> {
    match value {
        IValue::Tuple(items) => items
            .into_iter()
            .map(|v| match v {
                IValue::Tensor(t) => Ok(t),
                other => bail!("{what} returned a non-tensor output: {other:?}"),
            })
            .collect(),
        IValue::Tensor(t) => Ok(vec![t]),
        other => bail!("{what} returned {other:?}, not tensors"),
    }
}

impl TorchModel {
    /// Checks the bundle and loads its TorchScript twin.
    pub fn load(dir: &Path) -> Result<Self> {
        let bundle = Bundle::open(dir)?;
        let Some(ts) = bundle.manifest.torchscript.clone() else {
            bail!(
                "the bundle has no [torchscript] twin (int8 bundles never do): use the tract \
                 backend or an fp32 bundle exported by hark-export"
            );
        };
        let device = Device::cuda_if_available();
        let load = |file: &str| {
            CModule::load_on_device(dir.join(file), device).map_err(|e| BundleError::Graph {
                file: file.to_string(),
                message: format!("not a loadable TorchScript module: {e}"),
            })
        };
        let graphs = (load(&ts.encoder)?, load(&ts.decoder)?);
        log::info!("torch backend on {device:?}");
        Ok(Self {
            bundle,
            device,
            graphs: Mutex::new(graphs),
        })
    }

    fn forward(&self, decoder: bool, inputs: &[IValue]) -> Result<Vec<Tensor>> {
        let graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
        let (module, what) = if decoder {
            (&graphs.1, "decoder")
        } else {
            (&graphs.0, "encoder")
        };
        let out =
            tch::no_grad(|| module.forward_is(inputs)).with_context(|| format!("{what} failed"))?;
        tuple(out, what)
    }
}

/// The encoder's output for one window: memory and every state's initial value.
struct TorchEncoded {
    memory: Tensor,
    init: Vec<Tensor>,
}

impl Captioner for TorchModel {
    fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn caption_mel(
        &self,
        mel: &[f32],
        params: &DecodeParams,
        phrases: &[Vec<u32>],
    ) -> Result<ModelOutput> {
        let n_mels = self.bundle.manifest.frontend.n_mels;
        let frames = mel.len() / n_mels;
        let t0 = Instant::now();
        // Frame-major in, [1, n_mels, frames] for the graph.
        let input = Tensor::from_slice(mel)
            .reshape([frames as i64, n_mels as i64])
            .transpose(0, 1)
            .reshape([1, n_mels as i64, frames as i64])
            .to_device(self.device);
        let mut out = self.forward(false, &[IValue::Tensor(input)])?.into_iter();
        let memory = out.next().context("encoder returned no memory")?;
        let n_states = self.bundle.manifest.decoder.states.len();
        let init: Vec<Tensor> = out.by_ref().take(n_states).collect();
        // The tag heads' probabilities (then the sound embedding) follow the states, as in
        // the ONNX encoder.
        let vectors = out
            .map(|t| -> Result<Vec<f32>> {
                let t = t.to_device(tch::Device::Cpu).flatten(0, -1);
                Ok(Vec::<f32>::try_from(&t)?)
            })
            .collect::<Result<Vec<_>>>()?;
        if init.len() != n_states {
            bail!(
                "encoder returned {} initial states, the manifest declares {n_states}",
                init.len()
            );
        }
        let encoder_ms = t0.elapsed().as_secs_f64() * 1e3;
        let encoded = TorchEncoded { memory, init };
        let mut stepper = TorchStepper {
            model: self,
            encoded: &encoded,
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

/// [`Stepper`] over the TorchScript decoder.
struct TorchStepper<'a> {
    model: &'a TorchModel,
    encoded: &'a TorchEncoded,
}

impl TorchStepper<'_> {
    fn rows(&self, rows: &[usize]) -> Tensor {
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        Tensor::from_slice(&ids).to_device(self.model.device)
    }
}

impl Stepper for TorchStepper<'_> {
    type State = Vec<Tensor>;

    fn init(&mut self, batch: usize) -> Result<Self::State> {
        let encoded = self.encoded;
        self.select(&encoded.init, &vec![0; batch])
    }

    fn step(&mut self, tokens: &[u32], state: &mut Self::State) -> Result<Vec<f32>> {
        let batch = tokens.len() as i64;
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let mut inputs = vec![
            IValue::Tensor(Tensor::from_slice(&ids).to_device(self.model.device)),
            IValue::Tensor(self.encoded.memory.expand([batch, -1, -1], false)),
        ];
        inputs.extend(state.drain(..).map(IValue::Tensor));
        let mut out = self.model.forward(true, &inputs)?.into_iter();
        let logits = out.next().context("decoder returned no logits")?;
        state.extend(out);
        let flat = logits
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]);
        Ok(Vec::<f32>::try_from(&flat)?)
    }

    fn select(&mut self, state: &Self::State, rows: &[usize]) -> Result<Self::State> {
        let index = self.rows(rows);
        let specs = &self.model.bundle.manifest.decoder.states;
        Ok(specs
            .iter()
            .zip(state)
            .map(|(spec, t)| t.index_select(spec.batch_axis as i64, &index))
            .collect())
    }

    fn vocab(&self) -> usize {
        self.model.bundle.vocab.len()
    }
}
