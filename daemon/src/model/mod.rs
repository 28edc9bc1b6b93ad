//! The model: a bundle (`bundle`), the runtimes that run it (tract, ONNX Runtime, libtorch)
//! behind one `Captioner` trait (`captioner`), loaded once and shared by every window; which
//! tags a window publishes (`tags`).

pub mod bundle;
pub mod captioner;
#[cfg(feature = "ort")]
pub mod ort;
pub mod tags;
#[cfg(feature = "tch")]
pub mod torch;
pub mod tract;

use std::path::Path;

use anyhow::{Context, Result};

pub use bundle::{Bundle, resolve_bundle};
pub use captioner::{Alternative, Captioner};
pub use tags::{Tag, TagError};

use crate::config::Backend;

/// Loads the bundle in `dir` for `backend`.
pub fn load(dir: &Path, backend: Backend) -> Result<std::sync::Arc<dyn Captioner>> {
    let context = || format!("cannot use model bundle {}", dir.display());
    let model: std::sync::Arc<dyn Captioner> = match backend {
        Backend::Tract => std::sync::Arc::new(tract::TractModel::load(dir).with_context(context)?),
        #[cfg(feature = "tch")]
        Backend::Torch => std::sync::Arc::new(torch::TorchModel::load(dir).with_context(context)?),
        #[cfg(not(feature = "tch"))]
        Backend::Torch => anyhow::bail!(
            "the torch backend needs hark built with `--features tch` (docs/DEPLOY.md)"
        ),
        #[cfg(feature = "ort")]
        Backend::Ort => std::sync::Arc::new(ort::OrtModel::load(dir).with_context(context)?),
        #[cfg(not(feature = "ort"))]
        Backend::Ort => anyhow::bail!(
            "the ort backend is for benchmarks: build hark with `--features ort` \
             (docs/PERFORMANCE.md)"
        ),
    };
    // The full description (training data, metrics) only when asked: `hark run` names the
    // model in its start line, and `hark caption` prints captions, not logs.
    log::debug!("{}", model.bundle().describe());
    Ok(model)
}
