//! Compiles the engine's CUDA kernels for the CPU emulation in `cuda-emu/`
//! (each CUDA thread a host thread), so that the tests in
//! `tests/cuda_kernels.rs` run them on machines without a GPU.
fn main() {
    const EMU: &str = "cuda-emu";
    const KERNELS: &str = "../engine/src/ops";
    println!("cargo::rerun-if-changed={EMU}");
    println!("cargo::rerun-if-changed={KERNELS}");
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        // The emulation runs a thread per CUDA thread: unoptimised, the
        // tests' few thousand blocks take minutes.
        .opt_level(2)
        .flag("-pthread")
        .flag("-include")
        .flag(format!("{EMU}/include/cuda_emu.h"))
        .include(format!("{EMU}/include"))
        .include(KERNELS)
        .file(format!("{EMU}/kernels.cpp"))
        .warnings(true)
        .compile("wordup_cuda_emu");
}
