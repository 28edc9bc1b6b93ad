//! `hark check-config FILE`: the configuration checked as `hark run` would take it, the model
//! bundle it names loaded and probed, and a summary of what would run.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{config, model, pipeline, sink, source};

/// Checks `file` and prints what it configures; the error names what is wrong.
pub fn check_config(file: &Path) -> Result<()> {
    let cfg = config::Config::load(Some(file), |_| Ok(()))?;
    source::check(&cfg.source).map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
    if let Some(tls) = cfg.mqtt.as_ref().and_then(|m| m.tls.as_ref()) {
        sink::mqtt::tls::check(tls).map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
    }
    let dir = model::resolve_bundle(cfg.model.bundle.as_deref())?;
    // Loaded as `hark run` loads it: graphs parsed and probed by the configured
    // backend, so a damaged graph with a matching hash fails here, not at start.
    let model = model::load(&dir, cfg.model.backend)
        .with_context(|| format!("{}: model bundle {}", file.display(), dir.display()))?;
    let bundle = model.bundle();
    let m = &bundle.manifest;
    m.decoding
        .with_overrides(&cfg.decoding, m.tokens.max_len)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    cfg.tags
        .validate(bundle)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    pipeline::triggers::Triggers::build(&cfg.triggers, bundle)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!("{}: ok", file.display());
    println!("  device id: {}", cfg.device_id());
    println!("  source:    {}", cfg.source.describe());
    println!("  model:     {} ({})", bundle.manifest.name, dir.display());
    match &cfg.mqtt {
        Some(m) => println!(
            "  mqtt:      {}:{} as {}/{}/…",
            m.host,
            m.port(),
            m.topic_prefix,
            cfg.device_id()
        ),
        None => println!("  mqtt:      none (captions to stdout)"),
    }
    Ok(())
}
