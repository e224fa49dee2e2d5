//! The engine's CUDA kernels run on the CPU (`cuda-emu/`, compiled by the
//! build script): each launch as the engine's host code makes it, each CUDA
//! thread a host thread. What the emulation checks is the kernels' logic
//! (indexing, reductions, synchronisation, the WMMA tiles' layouts), on
//! machines without a GPU; `sd-bench parts` checks them on one.

use half::{bf16, f16};
use wordup_engine::ops::transpose::{Matrices, launch_dims};

type GroupNormEntry<T> = unsafe extern "C" fn(
    x: *const T,
    y: *mut T,
    weight: *const T,
    bias: *const T,
    batch: u32,
    channels: u32,
    plane: u64,
    groups: u32,
    eps: f32,
    silu: i32,
    splits: u32,
    plane_blocks: u32,
);
type SoftmaxEntry<T> =
    unsafe extern "C" fn(x: *const T, y: *mut T, rows: u32, width: u32, threads: u32);
type TransposeEntry<T> = unsafe extern "C" fn(
    x: *const T,
    y: *mut T,
    rows: u32,
    cols: u32,
    grid_x: u32,
    grid_y: u32,
    grid_z: u32,
    threads: u32,
);

// The entry points in cuda-emu/kernels.cpp. f16 and bf16 pass as their
// bits: the `half` types are `repr(transparent)` over u16, and CUDA's are
// 16-bit structs.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn emu_group_norm_f32(
        x: *const f32,
        y: *mut f32,
        weight: *const f32,
        bias: *const f32,
        batch: u32,
        channels: u32,
        plane: u64,
        groups: u32,
        eps: f32,
        silu: i32,
        splits: u32,
        plane_blocks: u32,
    );
    fn emu_group_norm_f16(
        x: *const f16,
        y: *mut f16,
        weight: *const f16,
        bias: *const f16,
        batch: u32,
        channels: u32,
        plane: u64,
        groups: u32,
        eps: f32,
        silu: i32,
        splits: u32,
        plane_blocks: u32,
    );
    fn emu_group_norm_bf16(
        x: *const bf16,
        y: *mut bf16,
        weight: *const bf16,
        bias: *const bf16,
        batch: u32,
        channels: u32,
        plane: u64,
        groups: u32,
        eps: f32,
        silu: i32,
        splits: u32,
        plane_blocks: u32,
    );
    fn emu_softmax_f32(x: *const f32, y: *mut f32, rows: u32, width: u32, threads: u32);
    fn emu_softmax_f16(x: *const f16, y: *mut f16, rows: u32, width: u32, threads: u32);
    fn emu_softmax_bf16(x: *const bf16, y: *mut bf16, rows: u32, width: u32, threads: u32);
    fn emu_transpose_f32(
        x: *const f32,
        y: *mut f32,
        rows: u32,
        cols: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        threads: u32,
    );
    fn emu_transpose_f16(
        x: *const f16,
        y: *mut f16,
        rows: u32,
        cols: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        threads: u32,
    );
    fn emu_transpose_bf16(
        x: *const bf16,
        y: *mut bf16,
        rows: u32,
        cols: u32,
        gx: u32,
        gy: u32,
        gz: u32,
        threads: u32,
    );
    fn emu_flash_attention_f16(
        q: *const f16,
        k: *const f16,
        v: *const f16,
        out: *mut f16,
        heads: u32,
        queries: u32,
        keys: u32,
        scale_log2: f32,
    );
}

/// A dtype the kernels take, with its entry points.
pub trait Element: Copy + Default {
    #[doc(hidden)]
    const GROUP_NORM: GroupNormEntry<Self>;
    #[doc(hidden)]
    const SOFTMAX: SoftmaxEntry<Self>;
    #[doc(hidden)]
    const TRANSPOSE: TransposeEntry<Self>;
}

impl Element for f32 {
    const GROUP_NORM: GroupNormEntry<Self> = emu_group_norm_f32;
    const SOFTMAX: SoftmaxEntry<Self> = emu_softmax_f32;
    const TRANSPOSE: TransposeEntry<Self> = emu_transpose_f32;
}

impl Element for f16 {
    const GROUP_NORM: GroupNormEntry<Self> = emu_group_norm_f16;
    const SOFTMAX: SoftmaxEntry<Self> = emu_softmax_f16;
    const TRANSPOSE: TransposeEntry<Self> = emu_transpose_f16;
}

impl Element for bf16 {
    const GROUP_NORM: GroupNormEntry<Self> = emu_group_norm_bf16;
    const SOFTMAX: SoftmaxEntry<Self> = emu_softmax_bf16;
    const TRANSPOSE: TransposeEntry<Self> = emu_transpose_bf16;
}

/// A GroupNorm call's shape, and how its launches split it.
#[derive(Debug, Clone, Copy)]
pub struct GroupNormCall {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
    pub groups: usize,
    pub eps: f32,
    pub silu: bool,
    /// Blocks summing each group (the first launch's grid x).
    pub splits: usize,
    /// Blocks normalising each plane (the last launch's grid x).
    pub plane_blocks: usize,
}

/// `group_norm.cu`'s three launches on `x`, `[batch, channels, plane]`.
pub fn group_norm<T: Element>(call: GroupNormCall, x: &[T], weight: &[T], bias: &[T]) -> Vec<T> {
    assert_eq!(x.len(), call.batch * call.channels * call.plane);
    assert_eq!((weight.len(), bias.len()), (call.channels, call.channels));
    assert!(call.groups > 0 && call.channels.is_multiple_of(call.groups));
    let mut y = vec![T::default(); x.len()];
    #[allow(unsafe_code)]
    // SAFETY: the slices hold what the launches read and write (checked
    // above), each in the entry point's element type.
    unsafe {
        T::GROUP_NORM(
            x.as_ptr(),
            y.as_mut_ptr(),
            weight.as_ptr(),
            bias.as_ptr(),
            call.batch as u32,
            call.channels as u32,
            call.plane as u64,
            call.groups as u32,
            call.eps,
            i32::from(call.silu),
            call.splits as u32,
            call.plane_blocks as u32,
        )
    };
    y
}

/// `softmax.cu` over rows of `width`, `threads` per row's block.
pub fn softmax<T: Element>(x: &[T], width: usize, threads: usize) -> Vec<T> {
    assert!(width > 0 && x.len().is_multiple_of(width));
    let mut y = vec![T::default(); x.len()];
    #[allow(unsafe_code)]
    // SAFETY: `x` and `y` hold `rows · width` values of the entry point's type.
    unsafe {
        T::SOFTMAX(
            x.as_ptr(),
            y.as_mut_ptr(),
            (x.len() / width) as u32,
            width as u32,
            threads as u32,
        )
    };
    y
}

/// `transpose.cu` on `x`, matrices of `m.rows × m.cols` one after another,
/// launched as the engine launches it (`ops::transpose::launch_dims`).
pub fn transpose<T: Element>(x: &[T], m: Matrices) -> candle_core::Result<Vec<T>> {
    assert_eq!(x.len(), m.batch * m.rows * m.cols);
    let ((gx, gy, gz), threads) = launch_dims(m)?;
    let mut y = vec![T::default(); x.len()];
    #[allow(unsafe_code)]
    // SAFETY: `x` and `y` hold the matrices' values in the entry point's
    // type (checked above), which the grid covers.
    unsafe {
        T::TRANSPOSE(
            x.as_ptr(),
            y.as_mut_ptr(),
            m.rows as u32,
            m.cols as u32,
            gx,
            gy,
            gz,
            threads,
        )
    };
    Ok(y)
}

/// `flash_attention.cu` on `q` `[heads, queries, 64]`, `k` and `v`
/// `[heads, keys, 64]` (queries and keys multiples of 64, as the engine
/// launches it).
pub fn flash_attention(q: &[f16], k: &[f16], v: &[f16], heads: usize, scale: f32) -> Vec<f16> {
    const DEPTH: usize = 64;
    let (queries, keys) = (q.len() / (heads * DEPTH), k.len() / (heads * DEPTH));
    assert_eq!(q.len(), heads * queries * DEPTH);
    assert_eq!(
        (k.len(), v.len()),
        (heads * keys * DEPTH, heads * keys * DEPTH)
    );
    assert!(queries.is_multiple_of(64) && keys.is_multiple_of(64));
    let mut out = vec![f16::ZERO; q.len()];
    #[allow(unsafe_code)]
    // SAFETY: the slices hold the shapes checked above.
    unsafe {
        emu_flash_attention_f16(
            q.as_ptr(),
            k.as_ptr(),
            v.as_ptr(),
            out.as_mut_ptr(),
            heads as u32,
            queries as u32,
            keys as u32,
            scale * std::f32::consts::LOG2_E,
        )
    };
    out
}
