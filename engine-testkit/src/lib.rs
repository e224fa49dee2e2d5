//! wordup-engine-testkit: what the engine's tests and benchmarks share, kept
//! out of the engine's public library: the tiny random-weight model
//! (`tiny`), fixture paths and comparison helpers (`fixtures`), timing
//! (`bench`), and the engine's CUDA kernels run on the CPU (`cuda_emu`).

pub mod bench;
pub mod cuda_emu;
pub mod fixtures;
pub mod tiny;
