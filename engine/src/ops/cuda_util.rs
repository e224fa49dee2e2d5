//! What the engine's CUDA ops share on the host side.

use candle_core::cuda_backend::CudaDType;
use candle_core::cuda_backend::cudarc::driver::CudaView;
use candle_core::{CudaStorage, Layout, Result};

/// The values of `storage` that a contiguous `layout` covers.
pub fn contiguous_view<'a, T: CudaDType>(
    storage: &'a CudaStorage,
    layout: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice::<T>()?.slice(start..end)),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}
