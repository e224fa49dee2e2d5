//! Fixture paths and helpers shared by the engine's tests; they panic with
//! a message instead of returning errors, as tests do.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{D, DType, Device, Tensor};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures")
}

/// A fresh scratch directory under the system's temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wordup-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where scripts/fetch-*.py put the real weights (the test command runs them).
pub fn weights_dir() -> PathBuf {
    std::env::var("WORDUP_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/weights"))
}

/// A real weights file, with a message saying how to get it when missing.
pub fn weights(name: &str, script: &str) -> PathBuf {
    let path = weights_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `python3 scripts/{script} target/weights` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// ‖a − b‖ / ‖b‖ over all elements, both taken to f32 on the host.
pub fn relative_l2(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    let a = a.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let b = b.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let error = (&a - &b)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    let norm = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    Ok(error / norm.max(f32::MIN_POSITIVE))
}

/// Largest absolute difference of two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(candle_core::DType::F32).unwrap();
    let b = b.to_dtype(candle_core::DType::F32).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The stdout lines of a command that must have succeeded (its stderr in
/// the failure message otherwise).
pub fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
