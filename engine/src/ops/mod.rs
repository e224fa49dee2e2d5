//! Layers whose CPU kernels are ours (f32): convolution and GroupNorm(+SiLU).
//! On other devices and dtypes they run candle's ops, so a model built from
//! them behaves the same everywhere.

pub mod conv;
pub mod group_norm;

pub use conv::Conv2d;
pub use group_norm::GroupNorm;
