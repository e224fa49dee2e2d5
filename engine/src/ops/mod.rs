//! Layers whose CPU paths are ours (f32): convolution, GroupNorm(+SiLU), the
//! erf GELU and GEGLU, softmax, attention in blocks (flash attention),
//! linear layers with weights laid out for gemm, and NCHW ↔ NHWC copies.
//! On other devices and dtypes they run candle's ops, so a model built from
//! them behaves the same everywhere.

pub mod attention;
pub mod choice;
pub mod conv;
#[cfg(feature = "cuda")]
pub mod cuda_graph;
#[cfg(feature = "cuda")]
mod cuda_util;
pub mod device_conv;
pub mod gelu;
pub mod group_norm;
pub mod linear;
pub mod softmax;
/// NCHW ↔ NHWC copies (a batch of tiled transposes on CUDA).
pub mod transpose;

pub use conv::Conv2d;
pub use group_norm::GroupNorm;
pub use linear::Linear;

/// A raw pointer that rayon may hand to several threads: every task writes
/// a tile of the output of its own.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
#[allow(unsafe_code)]
unsafe impl Send for SharedOut {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method, so that closures capture the whole (Send) wrapper rather
    /// than the raw pointer field alone.
    fn get(self) -> *mut f32 {
        self.0
    }
}

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

/// `f()`, compiled for AVX-512 or AVX2 with FMA where the CPU has them. The
/// build targets baseline x86-64, where each `mul_add` is a call into libm
/// and nothing is vectorised beyond SSE; `f` must be inlined here to gain
/// (small closures are).
#[inline(always)]
fn with_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: the features it is compiled for were just detected.
            return unsafe { avx512(f) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}
