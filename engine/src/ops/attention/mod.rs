//! Attention, softmax(q·kᵀ·scale)·v, on the CPU in f32 one block of queries
//! at a time against blocks of keys, with a running maximum and sum per query
//! (flash attention). The scores of a block stay in cache between the two
//! products, and their exp runs in the CPU's widest vectors; candle's ops
//! wrote the UNet's 4096×4096 self-attention scores (84M floats per layer at
//! 512², in chunks) to memory, read them back twice, and spent longer on the
//! softmax than on both products.
//!
//! Off the host the products run in the inputs' dtype around our softmax
//! ([`unfused`]). On CUDA in f16, heads 64 deep without a mask (the UNet's
//! self-attention) may instead run our flash attention kernel
//! (`flash_attention.cu`): each shape's first call times both ways and
//! keeps the faster (`choice`), the kernel only when it lands within
//! [`FLASH_TOLERANCE`] of the unfused ops.

#[cfg(feature = "cuda")]
mod cuda;

use std::sync::LazyLock;
use std::time::Duration;

use candle_core::{CpuStorage, CustomOp3, DType, DeviceLocation, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::choice::{Chosen, best_of_two, time_if_accurate};
use super::softmax::{NEGLIGIBLE, fast_exp};

/// Queries per task, at most: rows enough for gemm to run at speed (64 was
/// 1.2–1.5× slower on one core, 256 no faster), fewer when the tasks would
/// not keep every thread busy.
const QUERY_BLOCK: usize = 128;
/// Keys per block: a block's scores (`QUERY_BLOCK · KEY_BLOCK` floats, 128 KB)
/// stay in L2 between the product that writes them and the one that reads them.
const KEY_BLOCK: usize = 256;
/// Query rows per chunk where candle's ops run: a chunk's scores are
/// `heads · FALLBACK_CHUNK · keys` floats, near 80 MB at 64² latents (4096
/// keys) rather than the whole image's 330 MB.
const FALLBACK_CHUNK: usize = 1024;

/// Which keys a query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Every key.
    None,
    /// Keys at or before the query's own position (CLIP's text encoder);
    /// queries and keys are the same sequence.
    Causal,
}

/// softmax(q·kᵀ·scale)·v per batch·head: `q` `[n, queries, depth]`, `k`
/// `[n, keys, depth]`, `v` `[n, keys, depth_v]` → `[n, queries, depth_v]`
/// in q's dtype. The softmax is in f32 whatever the inputs' dtype (in f16
/// its sums overflow over thousands of keys); on the host the products are
/// too, elsewhere they run in the inputs' dtype (f16 on the tensor cores).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    let (n, queries, depth) = q.dims3()?;
    let (k_n, keys, k_depth) = k.dims3()?;
    let (v_n, v_keys, depth_v) = v.dims3()?;
    if (k_n, k_depth) != (n, depth) || (v_n, v_keys) != (n, keys) {
        candle_core::bail!(
            "attention: q {:?}, k {:?} and v {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if queries * keys * depth * depth_v == 0 {
        candle_core::bail!("attention: empty q, k or v");
    }
    if mask == Mask::Causal && keys != queries {
        candle_core::bail!("attention: {keys} keys for {queries} queries with a causal mask");
    }
    if !q.device().is_cpu() {
        return off_the_host(q, k, v, scale, mask);
    }
    let dtype = q.dtype();
    let [q, k, v] = [q, k, v].map(|t| t.to_dtype(DType::F32));
    let (q, k, v) = (q?, k?, v?);
    let op = FlashAttention {
        scale: scale as f32,
        mask,
    };
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?
        .to_dtype(dtype)
}

/// The queries of a flash attention block, and the keys of its step:
/// queries and keys must come in whole blocks.
pub const FLASH_BLOCK: usize = 64;
/// The only depth of q, k and v the flash attention kernel takes.
pub const FLASH_DEPTH: usize = 64;

/// Flash attention is kept for a shape only within this relative L2
/// distance of the unfused ops: its probabilities are rounded to f16 before
/// their product with v, as the unfused path's are (about 1e-3 apart); a
/// wrong tile is off by about 1.
pub const FLASH_TOLERANCE: f64 = 2e-2;

/// How attention runs off the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// Our flash attention kernel.
    Flash,
    /// candle's products around our softmax ([`unfused`]).
    Unfused,
}

/// What a way is chosen for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AttentionKey {
    q: Vec<usize>,
    k: Vec<usize>,
    dtype: DType,
    device: DeviceLocation,
}

static CHOSEN: LazyLock<Chosen<AttentionKey, Way>> = LazyLock::new(Chosen::default);

/// Whether the flash kernel takes these operands: CUDA, f16, no mask, 64
/// deep, queries and keys in whole blocks.
fn flash_fits(q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask) -> bool {
    let whole = |t: &Tensor| t.dims()[1].is_multiple_of(FLASH_BLOCK) && t.dims()[2] == FLASH_DEPTH;
    cfg!(feature = "cuda")
        && q.device().is_cuda()
        && q.dtype() == DType::F16
        && mask == Mask::None
        && [q, k, v].into_iter().all(whole)
}

/// Attention on a device: the way chosen for the shape where the flash
/// kernel fits, the unfused ops elsewhere.
fn off_the_host(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    if !flash_fits(q, k, v, mask) {
        return unfused(q, k, v, scale, mask);
    }
    let key = AttentionKey {
        q: q.dims().to_vec(),
        k: k.dims().to_vec(),
        dtype: q.dtype(),
        device: q.device().location(),
    };
    match CHOSEN.get_or_choose(&key, || trials(q, k, v, scale)) {
        Some(Way::Flash) => flash(q, k, v, scale).or_else(|error| {
            tracing::debug!(%error, "flash attention failed; the unfused ops run");
            unfused(q, k, v, scale, mask)
        }),
        Some(Way::Unfused) | None => unfused(q, k, v, scale, mask),
    }
}

/// Both ways timed on these operands, flash attention without a time when
/// it fails or strays beyond [`FLASH_TOLERANCE`] from the unfused ops.
fn trials(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Vec<(Way, Option<Duration>)> {
    let unfused = || unfused(q, k, v, scale, Mask::None);
    let reference = match unfused().and_then(|r| r.to_dtype(DType::F32)) {
        Ok(reference) => reference,
        Err(error) => {
            tracing::debug!(%error, "unfused attention failed; nothing to choose from");
            return Vec::new();
        }
    };
    let flash = || flash(q, k, v, scale);
    let flash_time = time_if_accurate(&Way::Flash, q.device(), &reference, FLASH_TOLERANCE, flash);
    let unfused_time = best_of_two(q.device(), unfused).ok();
    vec![(Way::Flash, flash_time), (Way::Unfused, unfused_time)]
}

/// Our flash attention kernel on a CUDA device (an error elsewhere, and
/// where the operands do not fit it): what [`Way::Flash`] runs.
pub fn flash(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if q.device().is_cpu() {
        candle_core::bail!("flash attention: the CUDA kernel runs on CUDA devices only");
    }
    let op = FlashAttention {
        scale: scale as f32,
        mask: Mask::None,
    };
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}

/// candle's matmul, softmax and matmul, in chunks of queries: the products
/// in the inputs' dtype, the softmax in f32 (inside our kernel on CUDA).
pub fn unfused(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    let (_, queries, _) = q.dims3()?;
    let dtype = q.dtype();
    // The scale goes on q, smaller than the scores.
    let q = (q * scale)?;
    let k_t = k.t()?.contiguous()?;
    let mask = match mask {
        Mask::None => None,
        Mask::Causal => Some(causal_mask(queries, q.device())?),
    };
    let in_kernel = cfg!(feature = "cuda") && q.device().is_cuda();
    let mut chunks = Vec::with_capacity(queries.div_ceil(FALLBACK_CHUNK));
    for start in (0..queries).step_by(FALLBACK_CHUNK) {
        let len = FALLBACK_CHUNK.min(queries - start);
        let scores = q.narrow(1, start, len)?.matmul(&k_t)?;
        let weights = match &mask {
            // Our CUDA softmax reads and writes the scores' dtype and
            // computes in f32: one pass where converting is two more.
            None if in_kernel => super::softmax::softmax_last_dim(&scores)?,
            _ => {
                let mut scores = scores.to_dtype(DType::F32)?;
                if let Some(mask) = &mask {
                    scores = scores.broadcast_add(&mask.narrow(0, start, len)?)?;
                }
                super::softmax::softmax_last_dim(&scores)?.to_dtype(dtype)?
            }
        };
        chunks.push(weights.matmul(v)?);
    }
    Tensor::cat(&chunks, 1)
}

/// `[n, n]`: 0 where key j ≤ query i, −∞ after.
fn causal_mask(n: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, n), device)
}

/// Flash attention: on the CPU in f32 (any depth, either mask); on CUDA in
/// f16, 64 deep, unmasked, queries and keys in whole blocks.
struct FlashAttention {
    scale: f32,
    mask: Mask,
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("attention: the inputs must be contiguous"),
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "wordup-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, queries, depth) = l1.shape().dims3()?;
        let call = Call {
            q: contiguous_f32(s1, l1)?,
            k: contiguous_f32(s2, l2)?,
            v: contiguous_f32(s3, l3)?,
            queries,
            keys: l2.shape().dims3()?.1,
            depth,
            depth_v: l3.shape().dims3()?.2,
            scale: self.scale,
            mask: self.mask,
        };
        let threads = rayon::current_num_threads();
        let mut block = QUERY_BLOCK;
        while block > 16 && n * queries.div_ceil(block) < 4 * threads {
            block /= 2;
        }
        let depth_v = call.depth_v;
        let mut out = vec![0f32; n * queries * depth_v];
        out.par_chunks_mut(queries * depth_v)
            .enumerate()
            .flat_map(|(head, out)| {
                out.par_chunks_mut(block * depth_v)
                    .enumerate()
                    .map(move |(i, out)| (head, i * block, out))
            })
            .for_each_init(Scratch::default, |scratch, (head, first, out)| {
                call.query_block(head, first, out, scratch);
            });
        Ok((CpuStorage::F32(out), Shape::from((n, queries, depth_v))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        if self.mask != Mask::None {
            candle_core::bail!("flash attention: no mask on CUDA");
        }
        let out = cuda::flash_attention([(s1, l1), (s2, l2), (s3, l3)], self.scale)?;
        Ok((out, l1.shape().clone()))
    }
}

/// One call's inputs, contiguous, and what they are.
struct Call<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    queries: usize,
    keys: usize,
    depth: usize,
    depth_v: usize,
    scale: f32,
    mask: Mask,
}

/// Per query of a block: the largest score so far, and the sum of
/// e^(score − that largest) over the keys so far.
#[derive(Default)]
struct Running {
    max: Vec<f32>,
    sum: Vec<f32>,
}

/// One task's buffers, reused between its blocks.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    running: Running,
}

impl Call<'_> {
    /// `out`'s rows: queries `first..` of batch·head `head`, against all its keys.
    fn query_block(&self, head: usize, first: usize, out: &mut [f32], scratch: &mut Scratch) {
        let (depth, depth_v) = (self.depth, self.depth_v);
        let rows = out.len() / depth_v;
        let q = &self.q[(head * self.queries + first) * depth..][..rows * depth];
        let k = &self.k[head * self.keys * depth..][..self.keys * depth];
        let v = &self.v[head * self.keys * depth_v..][..self.keys * depth_v];
        // A causal block needs no key after its last query.
        let keys = match self.mask {
            Mask::None => self.keys,
            Mask::Causal => first + rows,
        };
        let Scratch { scores, running } = scratch;
        running.max.clear();
        running.max.resize(rows, f32::NEG_INFINITY);
        running.sum.clear();
        running.sum.resize(rows, 0.0);
        for key in (0..keys).step_by(KEY_BLOCK) {
            let cols = KEY_BLOCK.min(keys - key);
            scores.resize(rows * cols, 0.0);
            let scores = &mut scores[..rows * cols];
            #[allow(unsafe_code)]
            // SAFETY: `scores` is rows × cols, `q` rows × depth, and keys
            // `key..key + cols` of `k` (read transposed) lie inside it; each
            // task writes its own buffers only.
            unsafe {
                gemm::gemm(
                    rows,
                    cols,
                    depth,
                    scores.as_mut_ptr(),
                    1,
                    cols as isize,
                    false,
                    q.as_ptr(),
                    1,
                    depth as isize,
                    k[key * depth..].as_ptr(),
                    depth as isize,
                    1,
                    0.0,
                    self.scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            if self.mask == Mask::Causal {
                for (row, scores) in scores.chunks_mut(cols).enumerate() {
                    // Keys after query `first + row` are hidden from it.
                    let visible = (first + row + 1).saturating_sub(key).min(cols);
                    scores[visible..].fill(f32::NEG_INFINITY);
                }
            }
            let first_block = key == 0;
            exp_rows(scores, running, out, first_block);
            #[allow(unsafe_code)]
            // SAFETY: `out` is rows × depth_v, `scores` rows × cols, and keys
            // `key..key + cols` of `v` lie inside it.
            unsafe {
                gemm::gemm(
                    rows,
                    depth_v,
                    cols,
                    out.as_mut_ptr(),
                    1,
                    depth_v as isize,
                    !first_block,
                    scores.as_ptr(),
                    1,
                    cols as isize,
                    v[key * depth_v..].as_ptr(),
                    1,
                    depth_v as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        for (row, &sum) in out.chunks_mut(depth_v).zip(&running.sum) {
            let inverse = 1.0 / sum;
            row.iter_mut().for_each(|o| *o *= inverse);
        }
    }
}

/// The softmax step of one block, compiled for the vector unit the CPU has:
/// the build targets baseline x86-64, where each `mul_add` of [`fast_exp`]
/// is a call into libm (which made candle-op attention's softmax cost more
/// than its two products).
fn exp_rows(scores: &mut [f32], running: &mut Running, out: &mut [f32], first_block: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(s: &mut [f32], r: &mut Running, o: &mut [f32], f: bool) {
            exp_rows_generic(s, r, o, f)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(s: &mut [f32], r: &mut Running, o: &mut [f32], f: bool) {
            exp_rows_generic(s, r, o, f)
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: the features it is compiled for were just detected.
            unsafe {
                avx512(scores, running, out, first_block)
            };
            return;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                avx2(scores, running, out, first_block)
            };
            return;
        }
    }
    exp_rows_generic(scores, running, out, first_block)
}

/// Lanes of the running maximum and sum: independent accumulators the
/// compiler keeps in one vector register.
const LANES: usize = 16;

/// Per row of a block of scores: the new running maximum, the scores turned
/// into e^(score − maximum) in place, the running sum and the output row
/// (earlier blocks' share) rescaled to the new maximum.
#[inline(always)]
fn exp_rows_generic(scores: &mut [f32], running: &mut Running, out: &mut [f32], first_block: bool) {
    let rows = running.max.len();
    let (cols, depth_v) = (scores.len() / rows, out.len() / rows);
    let state = running.max.iter_mut().zip(running.sum.iter_mut());
    let rows = scores.chunks_mut(cols).zip(out.chunks_mut(depth_v));
    for ((row, out), (max, sum)) in rows.zip(state) {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane = if x > *lane { x } else { *lane };
            }
        }
        let block_max = chunks
            .remainder()
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        let new_max = max.max(block_max);
        // As in softmax, a term more than e^70 below the largest is 0:
        // smaller ones would reach subnormals in the product with v.
        let exp = |x: f32| {
            let d = x - new_max;
            if d < NEGLIGIBLE { 0.0 } else { fast_exp(d) }
        };
        let mut lanes = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (lane, x) in lanes.iter_mut().zip(chunk) {
                *x = exp(*x);
                *lane += *x;
            }
        }
        let mut block_sum = lanes.iter().sum::<f32>();
        for x in chunks.into_remainder() {
            *x = exp(*x);
            block_sum += *x;
        }
        if first_block {
            *sum = block_sum;
        } else {
            let correction = exp(*max);
            *sum = *sum * correction + block_sum;
            if correction != 1.0 {
                out.iter_mut().for_each(|o| *o *= correction);
            }
        }
        *max = new_max;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// candle's unfused ops on the host: scores, mask, softmax, product.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Mask::None => scores,
            Mask::Causal => scores.broadcast_add(&causal_mask(q.dim(1)?, q.device())?)?,
        };
        candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
    }

    fn relative_error(got: &Tensor, expected: &Tensor) -> Result<f32> {
        let error = (got - expected)?.sqr()?.sum_all()?.sqrt()?;
        let norm = expected.sqr()?.sum_all()?.sqrt()?;
        Ok(error.to_scalar::<f32>()? / norm.to_scalar::<f32>()?)
    }

    fn check(n: usize, queries: usize, keys: usize, depth: usize, mask: Mask) -> Result<()> {
        let dev = Device::Cpu;
        // Scores of a few units, as trained attention has, so that the
        // softmax is far from uniform.
        let q = Tensor::randn(0f32, 3.0, (n, queries, depth), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (n, keys, depth), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (n, keys, depth + 3), &dev)?;
        let scale = 1.0 / (depth as f64).sqrt();
        let expected = reference(&q, &k, &v, scale, mask)?;
        let got = attention(&q, &k, &v, scale, mask)?;
        assert_eq!(got.dims(), expected.dims());
        let error = relative_error(&got, &expected)?;
        assert!(
            error < 1e-5,
            "{n}×{queries}×{keys}×{depth} {mask:?}: relative error {error}"
        );
        // The unfused path other devices take, here on the host.
        let error = relative_error(&unfused(&q, &k, &v, scale, mask)?, &expected)?;
        assert!(error < 1e-5, "unfused: relative error {error}");
        // The same in f16 (products in f16, softmax in f32), as on a GPU.
        let half = [&q, &k, &v].map(|t| t.to_dtype(DType::F16));
        let [q16, k16, v16] = half;
        let got = unfused(&q16?, &k16?, &v16?, scale, mask)?;
        assert_eq!(got.dtype(), DType::F16);
        let error = relative_error(&got.to_dtype(DType::F32)?, &expected)?;
        assert!(error < 5e-3, "unfused in f16: relative error {error}");
        Ok(())
    }

    #[test]
    fn matches_candles_ops() -> Result<()> {
        // (batch·heads, queries, keys, depth)
        for (n, queries, keys, depth) in [
            (1, 1, 1, 1),
            (2, 5, 7, 3),
            // Keys and queries off the block sizes, several key blocks.
            (3, 130, 1100, 16),
            // Cross-attention to a prompt, the UNet's at 32² latents.
            (10, 1024, 77, 64),
            // The VAE's self-attention at 32² latents: one head, 512 deep.
            (1, 1024, 1024, 512),
        ] {
            check(n, queries, keys, depth, Mask::None)?;
        }
        Ok(())
    }

    #[test]
    fn matches_candles_ops_at_4096_positions() -> Result<()> {
        // The UNet's self-attention at 64² latents, two heads.
        check(2, 4096, 4096, 64, Mask::None)
    }

    #[test]
    fn masks_later_keys() -> Result<()> {
        // The text encoder's 77 tokens, and more than a block of each.
        check(4, 77, 77, 64, Mask::Causal)?;
        check(2, 600, 600, 8, Mask::Causal)
    }

    #[test]
    fn keeps_the_dtype_and_refuses_misfits() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 9, 8), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (2, 11, 8), &dev)?;
        let expected = attention(&q, &k, &k, 0.3, Mask::None)?;
        let half = |t: &Tensor| t.to_dtype(DType::F16);
        let got = attention(&half(&q)?, &half(&k)?, &half(&k)?, 0.3, Mask::None)?;
        assert_eq!(got.dtype(), DType::F16);
        assert!(relative_error(&got.to_dtype(DType::F32)?, &expected)? < 1e-2);
        assert!(attention(&q, &k, &q, 0.3, Mask::None).is_err());
        assert!(attention(&q, &k, &k, 0.3, Mask::Causal).is_err());
        Ok(())
    }
}
