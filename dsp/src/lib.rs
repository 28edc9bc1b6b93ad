#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod config;
pub mod fixed;
pub mod framer;
#[cfg(feature = "std")]
pub mod logmel;
pub mod mel;
#[cfg(feature = "std")]
pub mod resample;
pub mod window;

pub use config::{
    ConfigError, Framing, FrontendConfig, LogKind, MelNorm, MelScale, MelWeights, WindowKind,
};
pub use framer::Framer;
#[cfg(feature = "std")]
pub use logmel::{FeaturesError, LogMel, features};
#[cfg(feature = "std")]
pub use resample::Resampler;
