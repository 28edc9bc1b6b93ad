//! The one-off commands beside `hark run`: `hark caption`, `hark check-config`,
//! `hark features`, and `hark learn` / `hark sounds` for learned sounds.

pub mod caption;
pub mod check;
pub mod features;
pub mod learn;
