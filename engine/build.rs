//! With the `cuda` feature, compiles the engine's CUDA kernels (`KERNELS`)
//! to PTX in OUT_DIR with nvcc, for compute capability 7.5
//! (or CUDA_COMPUTE_CAP when lower), which every later GPU loads. Without
//! the feature it does nothing.
use std::path::{Path, PathBuf};
use std::process::Command;

const KERNELS: [&str; 4] = [
    "src/ops/group_norm/group_norm.cu",
    "src/ops/softmax/softmax.cu",
    "src/ops/attention/flash_attention.cu",
    "src/ops/transpose/transpose.cu",
];
/// Where the kernels' shared header is.
const INCLUDE: &str = "src/ops";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=CUDA_ROOT");
    println!("cargo::rerun-if-changed={INCLUDE}/cuda_common.cuh");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // PTX for a virtual architecture loads on that one and every later GPU
    // (the driver compiles it for the card), and these kernels use nothing
    // newer than sm_75, the oldest CUDA 13 supports.
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .and_then(|cap| cap.parse::<u32>().ok())
        .map_or(75, |cap| cap.min(75));
    let nvcc = std::env::var_os("CUDA_ROOT")
        .map(|root| Path::new(&root).join("bin/nvcc"))
        .filter(|nvcc| nvcc.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    for kernel in KERNELS {
        println!("cargo::rerun-if-changed={kernel}");
        let name = Path::new(kernel).file_stem().expect("a kernel file name");
        let ptx = out.join(name).with_extension("ptx");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(format!("-I{INCLUDE}"))
            .arg("-o")
            .arg(&ptx)
            .arg(kernel)
            .status()
            .unwrap_or_else(|error| panic!("running {}: {error}", nvcc.display()));
        assert!(status.success(), "nvcc failed on {kernel}");
    }
}
