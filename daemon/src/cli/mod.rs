//! The one-off commands beside `hark run`: `hark caption` and `hark features`.

pub mod caption;
pub mod features;
