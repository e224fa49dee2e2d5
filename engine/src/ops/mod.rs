//! Layers whose CPU paths are ours (f32): convolution, GroupNorm(+SiLU), the
//! erf GELU and GEGLU, softmax, attention in blocks (flash attention), and
//! linear layers with weights laid out for gemm.
//! On other devices and dtypes they run candle's ops, so a model built from
//! them behaves the same everywhere.

pub mod attention;
pub mod conv;
pub mod gelu;
pub mod group_norm;
pub mod linear;
pub mod softmax;

pub use conv::Conv2d;
pub use group_norm::GroupNorm;
pub use linear::Linear;

/// Below this many elements an elementwise or row-wise kernel runs on the
/// calling thread: waking the pool costs more than the work.
const PARALLEL_MIN: usize = 1 << 20;

/// `f(out_row, in_row)` for every row of `width` floats, on the pool only
/// when the tensor is large.
fn for_each_row(
    out: &mut [f32],
    input: &[f32],
    width: usize,
    f: impl Fn(usize, &mut [f32], &[f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    let (out_width, in_width) = (out.len() * width / input.len().max(1), width);
    if input.len() < PARALLEL_MIN {
        out.chunks_mut(out_width.max(1))
            .zip(input.chunks(in_width.max(1)))
            .enumerate()
            .for_each(|(i, (o, x))| f(i, o, x));
    } else {
        out.par_chunks_mut(out_width.max(1))
            .zip(input.par_chunks(in_width.max(1)))
            .enumerate()
            .for_each(|(i, (o, x))| f(i, o, x));
    }
}
