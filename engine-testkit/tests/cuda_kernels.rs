//! The engine's CUDA kernels, run on the CPU by the emulation in
//! `cuda-emu/`, against candle's ops on the host in f32: GroupNorm(+SiLU),
//! softmax, flash attention and the NCHW ↔ NHWC transpose, in each dtype they take and over grids of
//! several sizes (each kernel must be right for any). On a GPU, `sd-bench
//! parts` runs the same kernels against the same references.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use half::{bf16, f16};
use wordup_engine::ops::GroupNorm;
use wordup_engine::ops::attention::{Mask, attention};
use wordup_engine::ops::transpose::Matrices;
use wordup_engine_testkit::cuda_emu::{self, Element, GroupNormCall};
use wordup_engine_testkit::fixtures::relative_l2;

/// Host values to and from a dtype the kernels take.
trait Values: Element + candle_core::WithDType {
    /// The dtype's rounding error scale, for tolerances.
    const EPSILON: f32;
}
impl Values for f32 {
    const EPSILON: f32 = 1e-6;
}
impl Values for f16 {
    const EPSILON: f32 = 1e-3;
}
impl Values for bf16 {
    const EPSILON: f32 = 8e-3;
}

/// `t` in T on the host, and the same values back in f32 (the reference's
/// input: rounding to T is then no part of the error).
fn rounded<T: Values>(t: &Tensor) -> Result<(Vec<T>, Tensor)> {
    let t = t.to_dtype(T::DTYPE)?;
    Ok((t.flatten_all()?.to_vec1::<T>()?, t.to_dtype(DType::F32)?))
}

fn group_norm_matches<T: Values>(call: GroupNormCall) -> Result<()> {
    let dev = Device::Cpu;
    let GroupNormCall {
        batch,
        channels,
        plane,
        groups,
        ..
    } = call;
    // Far from zero mean, as activations deep in a network are: the
    // variance's precision shows.
    let x = (Tensor::randn(0f32, 3.0, (batch, channels, plane), &dev)? + 20.0)?;
    let weight = Tensor::randn(0f32, 1.0, channels, &dev)?;
    let bias = Tensor::randn(0f32, 1.0, channels, &dev)?;
    let (x_values, x) = rounded::<T>(&x)?;
    let (weight_values, weight) = rounded::<T>(&weight)?;
    let (bias_values, bias) = rounded::<T>(&bias)?;
    let vb = VarBuilder::from_tensors(
        [("weight".to_string(), weight), ("bias".to_string(), bias)].into(),
        DType::F32,
        &dev,
    );
    let reference = GroupNorm::load(groups, channels, call.eps as f64, vb)?;
    let expected = reference.forward_unfused(&x, call.silu)?;
    let got = cuda_emu::group_norm(call, &x_values, &weight_values, &bias_values);
    let got = Tensor::from_vec(got, (batch, channels, plane), &dev)?;
    let error = relative_l2(&got, &expected)?;
    assert!(
        error < 4.0 * T::EPSILON + 1e-5,
        "{:?} {call:?}: relative error {error}",
        T::DTYPE
    );
    Ok(())
}

#[test]
fn group_norm_matches_candles_ops_in_every_dtype_and_grid() -> Result<()> {
    // (batch, channels, plane, groups, splits, blocks per plane): one block
    // or several per group and per plane, splits that do not divide a
    // group, a plane smaller than a block.
    let shapes = [
        (2, 8, 63, 4, 1, 1),
        (2, 8, 63, 4, 3, 2),
        (1, 64, 33 * 33, 32, 7, 3),
        (3, 6, 5, 3, 2, 4),
    ];
    for (batch, channels, plane, groups, splits, plane_blocks) in shapes {
        for silu in [false, true] {
            let call = GroupNormCall {
                batch,
                channels,
                plane,
                groups,
                eps: 1e-5,
                silu,
                splits,
                plane_blocks,
            };
            group_norm_matches::<f32>(call)?;
            group_norm_matches::<f16>(call)?;
            group_norm_matches::<bf16>(call)?;
        }
    }
    Ok(())
}

fn softmax_matches<T: Values>(rows: usize, width: usize, threads: usize) -> Result<()> {
    let dev = Device::Cpu;
    // Scores of several units, so that the softmax is far from uniform.
    let x = Tensor::randn(0f32, 4.0, (rows, width), &dev)?;
    let (values, x) = rounded::<T>(&x)?;
    let expected = candle_nn::ops::softmax_last_dim(&x)?;
    let got = Tensor::from_vec(
        cuda_emu::softmax(&values, width, threads),
        (rows, width),
        &dev,
    )?;
    let error = relative_l2(&got, &expected)?;
    assert!(
        error < 2.0 * T::EPSILON + 1e-5,
        "{:?} {rows}×{width}, {threads} threads: relative error {error}",
        T::DTYPE
    );
    Ok(())
}

fn transpose_matches<T: Values>(m: Matrices) -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (m.batch, m.rows, m.cols), &dev)?;
    let (values, x) = rounded::<T>(&x)?;
    let expected = x.transpose(1, 2)?.contiguous()?;
    let got = Tensor::from_vec(
        cuda_emu::transpose(&values, m)?,
        (m.batch, m.cols, m.rows),
        &dev,
    )?
    .to_dtype(DType::F32)?;
    let same = got
        .eq(&expected)?
        .flatten_all()?
        .min(0)?
        .to_scalar::<u8>()?;
    assert_eq!(
        same,
        1,
        "{:?} {m:?}: not every value moved to its place",
        T::DTYPE
    );
    Ok(())
}

#[test]
fn transpose_moves_every_value_in_every_dtype_whatever_the_tiles_cover() -> Result<()> {
    // Whole tiles, ragged edges both ways, a matrix smaller than a tile,
    // and channels × pixels as the convolutions' copies have them.
    for (batch, rows, cols) in [
        (1, 32, 32),
        (2, 33, 70),
        (3, 5, 7),
        (2, 64, 9 * 11),
        (1, 130, 3),
    ] {
        let m = Matrices { batch, rows, cols };
        transpose_matches::<f32>(m)?;
        transpose_matches::<f16>(m)?;
        transpose_matches::<bf16>(m)?;
    }
    Ok(())
}

#[test]
fn softmax_matches_candles_in_every_dtype_and_block_size() -> Result<()> {
    // Widths below, at and past a block's threads; the text encoder's 77.
    for (rows, width) in [(3, 1), (5, 31), (4, 77), (2, 128), (3, 1000), (2, 4096)] {
        for threads in [32, 128, 256] {
            softmax_matches::<f32>(rows, width, threads)?;
            softmax_matches::<f16>(rows, width, threads)?;
            softmax_matches::<bf16>(rows, width, threads)?;
        }
    }
    Ok(())
}

#[test]
fn flash_attention_matches_the_engines_attention() -> Result<()> {
    let dev = Device::Cpu;
    // (batch·heads, queries, keys): one block of each; several, more keys
    // than queries and the reverse.
    for (heads, queries, keys) in [(1, 64, 64), (3, 128, 192), (2, 192, 64)] {
        let q = Tensor::randn(0f32, 3.0, (heads, queries, 64), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (heads, keys, 64), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (heads, keys, 64), &dev)?;
        let [(q_values, q), (k_values, k), (v_values, v)] =
            [&q, &k, &v].map(|t| rounded::<f16>(t).expect("to f16"));
        let scale = 0.125;
        let expected = attention(&q, &k, &v, scale, Mask::None)?;
        let got = cuda_emu::flash_attention(&q_values, &k_values, &v_values, heads, scale as f32);
        let got = Tensor::from_vec(got, (heads, queries, 64), &dev)?;
        let error = relative_l2(&got, &expected)?;
        // The probabilities are rounded to f16 before their product with v.
        assert!(
            error < 2e-3,
            "{heads}×{queries}×{keys}: relative error {error}"
        );
    }
    Ok(())
}
