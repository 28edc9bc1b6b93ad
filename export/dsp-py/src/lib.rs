//! `hark_dsp`: the trainer's window onto the daemon's front end. Features computed here are
//! bit-for-bit the ones `hark` computes, because it is the same Rust code.

use dsp::FrontendConfig;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A log-mel front end with a fixed configuration.
#[pyclass(module = "hark_dsp", frozen)]
struct Frontend {
    cfg: FrontendConfig,
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl Frontend {
    /// `Frontend(config=None)`: `config` is a dict of front-end parameters (missing keys take
    /// their defaults; unknown keys are refused). Raises ValueError naming a bad parameter.
    #[new]
    #[pyo3(signature = (config = None))]
    fn new(py: Python<'_>, config: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        let cfg: FrontendConfig = match config {
            None => FrontendConfig::default(),
            Some(obj) => {
                let json: String = py
                    .import("json")?
                    .call_method1("dumps", (obj,))?
                    .extract()?;
                serde_json::from_str(&json)
                    .map_err(|e| value_error(format!("invalid frontend config: {e}")))?
            }
        };
        cfg.validate().map_err(value_error)?;
        Ok(Self { cfg })
    }

    /// The full configuration as a dict (what a model bundle records).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.cfg).map_err(value_error)?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Number of frames a signal of `n_samples` at the front end's rate yields.
    fn frames_for(&self, n_samples: usize) -> usize {
        self.cfg.frames_for(n_samples)
    }

    /// `logmel(samples, sample_rate)`: 1-D mono float32/float64 in [-1, 1] or int16 PCM at
    /// `sample_rate` Hz (resampled to the configured rate) → float32 array [n_mels, frames].
    fn logmel<'py>(
        &self,
        py: Python<'py>,
        samples: Bound<'py, PyAny>,
        sample_rate: u32,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x: Vec<f32> = if let Ok(a) = samples.extract::<PyReadonlyArray1<'py, f32>>() {
            a.as_slice()?.to_vec()
        } else if let Ok(a) = samples.extract::<PyReadonlyArray1<'py, i16>>() {
            a.as_slice()?.iter().map(|&s| s as f32 / 32768.0).collect()
        } else if let Ok(a) = samples.extract::<PyReadonlyArray1<'py, f64>>() {
            a.as_slice()?.iter().map(|&s| s as f32).collect()
        } else {
            return Err(value_error(
                "samples must be a contiguous 1-D numpy array of float32, float64 or int16 (mono)",
            ));
        };
        let cfg = &self.cfg;
        let frames = py
            .detach(|| dsp::features(cfg, &x, sample_rate))
            .map_err(value_error)?;
        let n_mels = cfg.n_mels;
        let t = frames.len() / n_mels;
        // Frame-major from Rust; the model input layout is [n_mels, frames].
        let arr = Array2::from_shape_vec((t, n_mels), frames).map_err(value_error)?;
        Ok(arr
            .reversed_axes()
            .as_standard_layout()
            .into_owned()
            .into_pyarray(py))
    }
}

/// `resample(samples, rate_in, rate_out)`: 1-D float32 mono at `rate_in` Hz → float32 at
/// `rate_out` Hz, through the daemon's own resampler (the one in front of every log-mel), so
/// clips prepared for training are resampled exactly as the daemon would.
#[pyfunction]
fn resample<'py>(
    py: Python<'py>,
    samples: PyReadonlyArray1<'py, f32>,
    rate_in: u32,
    rate_out: u32,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let x = samples.as_slice()?.to_vec();
    let out = py
        .detach(|| -> Result<Vec<f32>, dsp::resample::ResampleError> {
            let mut r = dsp::Resampler::new(rate_in, rate_out)?;
            let mut out = Vec::with_capacity(x.len() * rate_out as usize / rate_in as usize + 1);
            for chunk in x.chunks(4096) {
                r.push(chunk, |y| out.extend_from_slice(y));
            }
            r.finish(|y| out.extend_from_slice(y));
            Ok(out)
        })
        .map_err(value_error)?;
    Ok(out.into_pyarray(py))
}

/// A live stream through one front end: push chunks, get back the frames they complete.
#[pyclass(module = "hark_dsp", unsendable)]
struct Stream {
    mel: dsp::LogMel,
}

impl Stream {
    fn frames<'py>(
        py: Python<'py>,
        n_mels: usize,
        flat: Vec<f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let arr =
            Array2::from_shape_vec((flat.len() / n_mels, n_mels), flat).map_err(value_error)?;
        Ok(arr
            .reversed_axes()
            .as_standard_layout()
            .into_owned()
            .into_pyarray(py))
    }
}

#[pymethods]
impl Stream {
    /// `Stream(frontend)`: samples must already be at the front end's rate.
    #[new]
    fn new(frontend: &Frontend) -> PyResult<Self> {
        Ok(Self {
            mel: dsp::LogMel::new(&frontend.cfg).map_err(value_error)?,
        })
    }

    /// Pushes float32 samples; returns the frames they complete as [n_mels, k].
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        samples: PyReadonlyArray1<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let mut out = Vec::new();
        self.mel
            .push_f32(samples.as_slice()?, |f| out.extend_from_slice(f));
        Self::frames(py, self.mel.config().n_mels, out)
    }

    /// Ends the signal: returns the last (centre-padded) frames and resets the stream.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let mut out = Vec::new();
        self.mel.finish(|f| out.extend_from_slice(f));
        Self::frames(py, self.mel.config().n_mels, out)
    }
}

#[pymodule]
fn hark_dsp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Frontend>()?;
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(resample, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
