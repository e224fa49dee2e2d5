//! Layers whose CPU paths are ours (f32): convolution, GroupNorm(+SiLU), the
//! erf GELU and GEGLU, softmax, and linear layers with weights laid out for gemm.
//! On other devices and dtypes they run candle's ops, so a model built from
//! them behaves the same everywhere.

pub mod conv;
pub mod gelu;
pub mod group_norm;
pub mod linear;
pub mod softmax;

pub use conv::Conv2d;
pub use group_norm::GroupNorm;
pub use linear::Linear;
