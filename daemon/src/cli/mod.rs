//! The one-off commands beside `hark run`: `hark caption`, `hark check-config` and
//! `hark features`.

pub mod caption;
pub mod check;
pub mod features;
