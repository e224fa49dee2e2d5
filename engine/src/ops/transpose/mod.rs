//! NCHW ↔ NHWC copies of 4-D tensors, each a batch of matrix transposes
//! (`[c, h·w]` ↔ `[h·w, c]` per image). On CUDA one kernel moves 32×32
//! tiles through shared memory (`transpose.cu`), so that reads and writes
//! both run along memory; candle's strided copy works out each element's
//! source alone and, to NHWC, reads a whole plane apart between neighbours.
//! The convolutions' channels-last candidates (`device_conv`) pay two of
//! these per call.

#[cfg(feature = "cuda")]
mod cuda;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// `batch` matrices of `rows × cols`, stored one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrices {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

/// The side of the square tiles the CUDA kernel moves, and its threads per
/// block (eight warps, each a row of a tile at a time).
pub const TILE: usize = 32;
pub const THREADS: u32 = 256;

/// The most blocks a launch has along its second and third axes.
const GRID_LIMIT: usize = 65_535;

/// The CUDA kernel's grid for `m` (a block per tile of every matrix) and
/// threads per block.
pub fn launch_dims(m: Matrices) -> Result<((u32, u32, u32), u32)> {
    let (across, down) = (m.cols.div_ceil(TILE), m.rows.div_ceil(TILE));
    match (
        u32::try_from(across),
        down <= GRID_LIMIT && m.batch <= GRID_LIMIT,
    ) {
        (Ok(across), true) => Ok(((across, down as u32, m.batch as u32), THREADS)),
        _ => candle_core::bail!("transpose: {m:?} is too large for one launch"),
    }
}

struct Transpose {
    matrices: Matrices,
    /// The output's shape: the same elements, each matrix `cols × rows`.
    out: Shape,
}

/// Each matrix of `input` transposed.
fn transpose_on_cpu<T: Copy>(input: &[T], Matrices { rows, cols, .. }: Matrices) -> Vec<T> {
    let mut out = Vec::with_capacity(input.len());
    for matrix in input.chunks_exact((rows * cols).max(1)) {
        for col in 0..cols {
            out.extend((0..rows).map(|row| matrix[row * cols + col]));
        }
    }
    out
}

impl CustomOp1 for Transpose {
    fn name(&self) -> &'static str {
        "wordup-batched-transpose"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("transpose: the input must be contiguous");
        };
        let m = self.matrices;
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(transpose_on_cpu(&v[start..end], m)),
            CpuStorage::F16(v) => CpuStorage::F16(transpose_on_cpu(&v[start..end], m)),
            CpuStorage::BF16(v) => CpuStorage::BF16(transpose_on_cpu(&v[start..end], m)),
            other => candle_core::bail!("transpose: no CPU kernel for {:?}", other.dtype()),
        };
        Ok((out, self.out.clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((
            cuda::transpose(storage, layout, self.matrices)?,
            self.out.clone(),
        ))
    }
}

/// `x` (`[n, c, h, w]`) as a contiguous `[n, h, w, c]`.
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let matrices = Matrices {
        batch: n,
        rows: c,
        cols: h * w,
    };
    batched(x, matrices, (n, h, w, c), (0, 2, 3, 1))
}

/// `x` (`[n, h, w, c]`) as a contiguous `[n, c, h, w]`.
pub fn to_channels_first(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let matrices = Matrices {
        batch: n,
        rows: h * w,
        cols: c,
    };
    batched(x, matrices, (n, c, h, w), (0, 3, 1, 2))
}

/// Ours where there is a kernel for the device and dtype; candle's
/// permuted copy (by `permutation`) elsewhere, or for a launch too large.
fn batched(
    x: &Tensor,
    matrices: Matrices,
    out: (usize, usize, usize, usize),
    permutation: (usize, usize, usize, usize),
) -> Result<Tensor> {
    let device = x.device();
    let ours = matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && (device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda()));
    let candles = || x.permute(permutation)?.contiguous();
    if !ours {
        return candles();
    }
    let op = Transpose {
        matrices,
        out: Shape::from(out),
    };
    x.contiguous()?.apply_op1_no_bwd(&op).or_else(|error| {
        tracing::debug!(%error, "our transpose refused; candle's copy runs");
        candles()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layout_round_trips_and_matches_candles_permuted_copy() -> Result<()> {
        let cpu = &candle_core::Device::Cpu;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            // Odd sizes: no dimension a multiple of a tile.
            let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), cpu)?.to_dtype(dtype)?;
            let last = to_channels_last(&x)?;
            assert_eq!(last.dims(), &[2, 5, 7, 3]);
            let expected = x.permute((0, 2, 3, 1))?.contiguous()?;
            let same = last
                .eq(&expected)?
                .flatten_all()?
                .min(0)?
                .to_scalar::<u8>()?;
            assert_eq!(same, 1, "{dtype:?}: to channels-last");
            let back = to_channels_first(&last)?;
            assert_eq!(back.dims(), x.dims());
            let same = back.eq(&x)?.flatten_all()?.min(0)?.to_scalar::<u8>()?;
            assert_eq!(same, 1, "{dtype:?}: back to channels-first");
        }
        Ok(())
    }
}
