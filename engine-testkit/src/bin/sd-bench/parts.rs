//! `sd-bench parts`: single building blocks of the UNet and the VAE, run on
//! the CPU in f32 and on the best device in f32 and f16 with the same random
//! weights and inputs (the relative error of each), then timed alone on the
//! device at the VAE's 512² shapes. It answers "which block does a parity
//! difference come from" and "where does a stage's time go" without a
//! profiler, which the GPU hosts may lack.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use candle_core::conv::CudnnFwdAlgo;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    UpDecoderBlock2D, UpDecoderBlock2DConfig,
};
use clap::Args;
use wordup_engine::ops::GroupNorm;
use wordup_engine::ops::attention::{self, Mask};
use wordup_engine::ops::conv::PaddingSwitch;
use wordup_engine::ops::device_conv::{self, Call, ConvArgs, MemoryFormat};
use wordup_engine::ops::transpose::{to_channels_first, to_channels_last};
use wordup_engine::sd::resnet::{Config as ResnetConfig, ResnetBlock2D as OurResnetBlock};
use wordup_engine::sd::vae::SelfAttention;

use crate::{relative_l2, synced_median_ms};

#[derive(Args)]
pub struct PartsArgs {
    /// Batch size of the timed shapes.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Timed repetitions per part (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Side of the timed full-resolution shapes (the VAE's last layers).
    #[arg(long, default_value_t = 512)]
    side: usize,
    /// Skip the timings (errors only).
    #[arg(long)]
    no_timing: bool,
}

/// The same module twice: on the CPU in f32, and on `device` in `dtype`,
/// from one set of random weights.
fn twins<M>(
    device: &Device,
    dtype: DType,
    build: impl Fn(VarBuilder) -> candle_core::Result<M>,
) -> Result<(M, M)> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    // Norm weights start at 1 and biases at 0, which would hide a kernel
    // reading the wrong channel's: every vector gets random values. Built
    // again afterwards, as our CPU layers copy their weights at load.
    for var in varmap.all_vars() {
        if var.rank() == 1 {
            var.set(&Tensor::randn(0.5f32, 0.5, var.dims(), &Device::Cpu)?)?;
        }
    }
    let reference = build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    let tensors = varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("the weight map's lock is poisoned"))?
        .iter()
        .map(|(name, var)| {
            Ok((
                name.clone(),
                var.as_tensor().to_device(device)?.to_dtype(dtype)?,
            ))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let twin = build(VarBuilder::from_tensors(tensors, dtype, device))?;
    Ok((reference, twin))
}

type Part = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;

/// A pair of twin modules as parts.
fn modules<M: Module + 'static>(name: &'static str, (a, b): (M, M)) -> (&'static str, Part, Part) {
    (
        name,
        Box::new(move |x| a.forward(x)),
        Box::new(move |x| b.forward(x)),
    )
}

/// (name, the part on the CPU in f32, the part on the device), each taking
/// `[n, channels, h, w]`.
fn parts(
    device: &Device,
    dtype: DType,
    channels: usize,
) -> Result<Vec<(&'static str, Part, Part)>> {
    let c = channels;
    let mut list: Vec<(&'static str, Part, Part)> = Vec::new();
    // Ours (fused: one CUDA op) and candle's unfused ops, on the same weights.
    let group_norm = |vb: VarBuilder| GroupNorm::load(32, c, 1e-6, vb);
    list.push(modules("group_norm", twins(device, dtype, group_norm)?));
    let (a, b) = twins(device, dtype, group_norm)?;
    list.push((
        "group_norm_silu",
        Box::new(move |x| a.forward_silu(x)),
        Box::new(move |x| b.forward_silu(x)),
    ));
    let (a, b) = twins(device, dtype, group_norm)?;
    list.push((
        "group_norm_silu (candle)",
        Box::new(move |x| a.forward_unfused(x, true)),
        Box::new(move |x| b.forward_unfused(x, true)),
    ));
    list.push((
        "silu",
        Box::new(candle_nn::ops::silu),
        Box::new(candle_nn::ops::silu),
    ));
    let up = |x: &Tensor| {
        let (_, _, h, w) = x.dims4()?;
        x.upsample_nearest2d(2 * h, 2 * w)
    };
    list.push(("upsample_nearest2d", Box::new(up), Box::new(up)));
    let softmax = |x: &Tensor| wordup_engine::ops::softmax::softmax_last_dim(x);
    list.push(("softmax", Box::new(softmax), Box::new(softmax)));
    // Our transposes (a tiled CUDA kernel) against the same on the CPU.
    list.push((
        "to_channels_last",
        Box::new(to_channels_last),
        Box::new(to_channels_last),
    ));
    list.push((
        "to_channels_first",
        Box::new(to_channels_first),
        Box::new(to_channels_first),
    ));
    let conv = |vb: VarBuilder| {
        let cfg = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        candle_nn::conv2d(c, c, 3, cfg, vb)
    };
    list.push(modules("conv3x3", twins(device, dtype, conv)?));
    // The engine's convolution: ours on the CPU, device_conv's choice on the device.
    let ours = |vb: VarBuilder| wordup_engine::ops::Conv2d::load(c, c, 3, 1, 1, vb);
    list.push(modules("conv3x3 (engine)", twins(device, dtype, ours)?));
    // The engine's own block (fused GroupNorm+SiLU, conv2 adding the skip).
    let resnet = |vb: VarBuilder| {
        let cfg = ResnetConfig {
            out_channels: c,
            temb_channels: None,
            groups: 32,
            eps: 1e-6,
            output_scale_factor: 1.0,
        };
        OurResnetBlock::new(&cfg, c, &PaddingSwitch::default(), vb)
    };
    let (a, b) = twins(device, dtype, resnet)?;
    list.push((
        "resnet_block",
        Box::new(move |x| a.forward(x, None)),
        Box::new(move |x| b.forward(x, None)),
    ));
    let attention = |vb: VarBuilder| SelfAttention::new(c, 32, vb);
    list.push(modules("vae_attention", twins(device, dtype, attention)?));
    let up = |vb: VarBuilder| {
        let cfg = UpDecoderBlock2DConfig {
            num_layers: 3,
            resnet_eps: 1e-6,
            resnet_groups: 32,
            add_upsample: true,
            ..Default::default()
        };
        UpDecoderBlock2D::new(vb, c, c, cfg)
    };
    list.push(modules("vae_up_block", twins(device, dtype, up)?));
    Ok(list)
}

/// A part's relative L2 error against the CPU in f32 beyond which it fails:
/// f32 convolutions on a GPU run in TF32 (about 1e-3), f16 rounds each
/// value and candle's f16 convolutions accumulate in f16 (up to about 1e-2);
/// a kernel that reads a wrong channel or mean was off by 0.27–0.88.
fn part_tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 2e-2,
        _ => 5e-2,
    }
}

/// Fails when a part is further from the CPU than [`part_tolerance`], after
/// printing every part's error.
pub fn run(args: &PartsArgs, device: &Device) -> Result<()> {
    let mut failed = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        for (name, reference, part) in parts(device, dtype, 64)? {
            // Off zero mean, so that a norm that mishandles the mean shows.
            let x = (Tensor::randn(0f32, 1f32, (2, 64, 16, 16), &Device::Cpu)? + 3.0)?;
            let expected = reference(&x)?;
            let actual = part(&x.to_device(device)?.to_dtype(dtype)?);
            report_part(name, dtype, actual, &expected, &mut failed);
        }
    }
    failed.extend(attention_parity(device)?);
    conv_candidates(device)?;
    if !failed.is_empty() {
        return Err(anyhow!("parts beyond tolerance: {}", failed.join(", ")));
    }
    if args.no_timing {
        return Ok(());
    }
    time_attention(args, device)?;
    // The VAE decoder's widest layers at 512² (128 channels at full
    // resolution) and its attention (512 channels at 64²), in f16.
    let dtype = DType::F16;
    let n = args.batch;
    let full =
        Tensor::randn(0f32, 1f32, (n, 128, args.side, args.side), device)?.to_dtype(dtype)?;
    let deep = Tensor::randn(0f32, 1f32, (n, 512, args.side / 8, args.side / 8), device)?
        .to_dtype(dtype)?;
    let unet = Tensor::randn(0f32, 1f32, (n, 320, args.side / 8, args.side / 8), device)?
        .to_dtype(dtype)?;
    for (name, _, part) in parts(device, dtype, 128)? {
        if !matches!(
            name,
            "group_norm"
                | "group_norm_silu"
                | "group_norm_silu (candle)"
                | "silu"
                | "upsample_nearest2d"
                | "conv3x3"
                | "resnet_block"
        ) {
            continue;
        }
        let ms = synced_median_ms(args.repeats, device, || Ok(part(&full)?))?;
        println!("TIME {name} shape={:?} ms={ms:.3}", full.dims());
    }
    // The channels-last convolutions' copies: ours against candle's.
    let ms = synced_median_ms(args.repeats, device, || Ok(to_channels_last(&full)?))?;
    println!(
        "TIME to_channels_last (ours) shape={:?} ms={ms:.3}",
        full.dims()
    );
    let ms = synced_median_ms(args.repeats, device, || {
        Ok(full.permute((0, 2, 3, 1))?.contiguous()?)
    })?;
    println!(
        "TIME to_channels_last (candle's copy) shape={:?} ms={ms:.3}",
        full.dims()
    );
    let (_, attention) = twins(device, dtype, |vb: VarBuilder| {
        SelfAttention::new(512, 32, vb)
    })?;
    let ms = synced_median_ms(args.repeats, device, || Ok(attention.forward(&deep)?))?;
    println!("TIME vae_attention shape={:?} ms={ms:.3}", deep.dims());
    // One 3×3 convolution, with cuDNN's algorithm picked per call (candle's
    // default) and fixed: the difference is the per-call heuristic's cost.
    for (input, channels) in [(&full, 128), (&unet, 320)] {
        let kernel =
            Tensor::randn(0f32, 0.05, (channels, channels, 3, 3), device)?.to_dtype(dtype)?;
        for (label, algo) in [
            ("picked per call", None),
            (
                "implicit precomp gemm",
                Some(CudnnFwdAlgo::ImplicitPrecompGemm),
            ),
            ("implicit gemm", Some(CudnnFwdAlgo::ImplicitGemm)),
        ] {
            let ms = synced_median_ms(args.repeats, device, || {
                Ok(input.conv2d_with_algo(&kernel, 1, 1, 1, 1, algo)?)
            })?;
            println!("TIME conv3x3 ({label}) shape={:?} ms={ms:.3}", input.dims());
        }
        // With its bias: our cuDNN calls (f32 accumulation), fused and not,
        // NCHW and channels-last; then what the engine runs (the fastest,
        // chosen on the first call).
        let bias = Tensor::randn(0f32, 0.05, channels, device)?.to_dtype(dtype)?;
        let conv_args = |weight| ConvArgs {
            weight,
            bias: Some(&bias),
            residual: None,
            padding: 1,
            stride: 1,
        };
        let (input_nhwc, kernel_nhwc) = (
            input.permute((0, 2, 3, 1))?.contiguous()?,
            kernel.permute((0, 2, 3, 1))?.contiguous()?,
        );
        type Run<'a> = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + 'a>;
        let ours = |format, call| -> Run {
            let (input, kernel) = match format {
                MemoryFormat::Nchw => (input, &kernel),
                MemoryFormat::Nhwc => (&input_nhwc, &kernel_nhwc),
            };
            Box::new(move |_| device_conv::ours_in(input, conv_args(kernel), format, call))
        };
        let precomp = Call::Plain(CudnnFwdAlgo::ImplicitPrecompGemm);
        let mut runs: Vec<(String, Run)> = Vec::new();
        for format in [MemoryFormat::Nchw, MemoryFormat::Nhwc] {
            let layout = format_name(format);
            runs.push((
                format!("ours, fused + bias, {layout}"),
                ours(format, Call::Fused),
            ));
            runs.push((
                format!("ours, implicit precomp gemm + bias, {layout}"),
                ours(format, precomp),
            ));
            for rank in 0..device_conv::GRAPH_RANKS {
                runs.push((
                    format!("ours, cuDNN graph engine #{rank} + bias, {layout}"),
                    ours(format, Call::Graph(rank)),
                ));
            }
        }
        runs.push((
            "+ bias, as the engine runs it".to_owned(),
            Box::new(|x| device_conv::conv2d(x, conv_args(&kernel))),
        ));
        for (label, run) in runs {
            let ms = synced_median_ms(args.repeats, device, || Ok(run(input)?));
            report_time(&format!("conv3x3 ({label})"), input.dims(), ms);
        }
    }
    Ok(())
}

fn format_name(format: MemoryFormat) -> &'static str {
    match format {
        MemoryFormat::Nchw => "NCHW",
        MemoryFormat::Nhwc => "NHWC",
    }
}

/// On a CUDA device, one CANDIDATE line per way the engine may run a
/// convolution with our cuDNN calls, in each layout: its relative error
/// against the CPU in f32, or why it failed to run. Not a failure of the
/// check either way: the engine itself drops a candidate that strays from
/// candle's convolution, so these lines say what it will have to choose from.
fn conv_candidates(device: &Device) -> Result<()> {
    if !device.is_cuda() {
        return Ok(());
    }
    let cpu = &Device::Cpu;
    let x = Tensor::randn(0f32, 1f32, (2, 64, 16, 16), cpu)?;
    let weight = Tensor::randn(0f32, 0.05, (64, 64, 3, 3), cpu)?;
    let bias = Tensor::randn(0f32, 0.05, 64, cpu)?;
    let expected = x
        .conv2d(&weight, 1, 1, 1, 1)?
        .broadcast_add(&bias.reshape((1, 64, 1, 1))?)?;
    let mut calls = vec![Call::Fused, Call::Plain(CudnnFwdAlgo::ImplicitPrecompGemm)];
    calls.extend((0..device_conv::GRAPH_RANKS).map(Call::Graph));
    for dtype in [DType::F32, DType::F16] {
        let on_device = |t: &Tensor| t.to_device(device)?.to_dtype(dtype);
        let (x, weight, bias) = (on_device(&x)?, on_device(&weight)?, on_device(&bias)?);
        for format in [MemoryFormat::Nchw, MemoryFormat::Nhwc] {
            let to_format = |t: &Tensor| match format {
                MemoryFormat::Nchw => Ok(t.clone()),
                MemoryFormat::Nhwc => t.permute((0, 2, 3, 1))?.contiguous(),
            };
            let (x, weight) = (to_format(&x)?, to_format(&weight)?);
            for &call in &calls {
                let args = ConvArgs {
                    weight: &weight,
                    bias: Some(&bias),
                    residual: None,
                    padding: 1,
                    stride: 1,
                };
                let actual =
                    device_conv::ours_in(&x, args, format, call).and_then(|y| match format {
                        MemoryFormat::Nchw => Ok(y),
                        MemoryFormat::Nhwc => y.permute((0, 3, 1, 2)),
                    });
                let name = format!("conv3x3 ({call:?}, {})", format_name(format));
                match actual.and_then(|actual| relative_l2(&actual, &expected)) {
                    Ok(error) => {
                        let verdict = if f64::from(error) <= device_conv::TOLERANCE {
                            "ok"
                        } else {
                            "beyond the engine's tolerance: never chosen"
                        };
                        println!(
                            "CANDIDATE {name} dtype={dtype:?} relative_l2={error:.2e} {verdict}"
                        );
                    }
                    Err(error) => println!(
                        "CANDIDATE {name} dtype={dtype:?} failed to run (never chosen): {}",
                        first_line(&error)
                    ),
                }
            }
        }
    }
    Ok(())
}

/// One PART line: `actual`'s relative error against `expected`, or why it
/// failed to run; a failure's description added to `failed`.
fn report_part(
    name: &str,
    dtype: DType,
    actual: candle_core::Result<Tensor>,
    expected: &Tensor,
    failed: &mut Vec<String>,
) {
    match actual.and_then(|actual| relative_l2(&actual, expected)) {
        Ok(error) if error <= part_tolerance(dtype) => {
            println!("PART {name} dtype={dtype:?} relative_l2={error:.2e} ok");
        }
        Ok(error) => {
            println!("PART {name} dtype={dtype:?} relative_l2={error:.2e} FAILED");
            failed.push(format!("{name} ({dtype:?}): {error:.2e}"));
        }
        Err(error) => {
            let reason = first_line(&error);
            println!("PART {name} dtype={dtype:?} FAILED to run: {reason}");
            failed.push(format!("{name} ({dtype:?}): {reason}"));
        }
    }
}

/// The first line of an error (candle's carry a backtrace after it).
fn first_line(error: &impl std::fmt::Display) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An attention to run, named for its PART or TIME line.
type AttentionRun<'a> = (&'a str, Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>);

/// One TIME line: the median, or the first line of why the run failed.
fn report_time(what: &str, dims: &[usize], ms: Result<f64>) {
    match ms {
        Ok(ms) => println!("TIME {what} shape={dims:?} ms={ms:.3}"),
        Err(error) => {
            let reason = first_line(&error);
            println!("TIME {what} shape={dims:?} failed: {reason}");
        }
    }
}

/// The UNet's self-attention operands: `heads` of `tokens` queries and keys,
/// 64 deep, on the CPU in f32 (q scaled up so that the softmax is peaked).
fn attention_operands(heads: usize, tokens: usize) -> Result<[Tensor; 3]> {
    let shape = (heads, tokens, attention::FLASH_DEPTH);
    Ok([
        Tensor::randn(0f32, 3.0, shape, &Device::Cpu)?,
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?,
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?,
    ])
}

/// Attention on the device (the unfused ops in f32 and f16, our flash
/// kernel in f16 on CUDA, and the way the engine chooses) against the CPU's
/// in f32; the failures' descriptions.
fn attention_parity(device: &Device) -> Result<Vec<String>> {
    let [q, k, v] = attention_operands(4, 256)?;
    let scale = 1.0 / (attention::FLASH_DEPTH as f64).sqrt();
    let expected = attention::attention(&q, &k, &v, scale, Mask::None)?;
    let mut failed = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        let [q, k, v] = [&q, &k, &v].map(|t| t.to_device(device).and_then(|t| t.to_dtype(dtype)));
        let (q, k, v) = (q?, k?, v?);
        let mut ways: Vec<AttentionRun> = vec![
            (
                "attention (unfused)",
                Box::new(|| attention::unfused(&q, &k, &v, scale, Mask::None)),
            ),
            (
                "attention (as the engine runs it)",
                Box::new(|| attention::attention(&q, &k, &v, scale, Mask::None)),
            ),
        ];
        if device.is_cuda() && dtype == DType::F16 {
            ways.push((
                "flash_attention",
                Box::new(|| attention::flash(&q, &k, &v, scale)),
            ));
        }
        for (name, way) in ways {
            report_part(name, dtype, way(), &expected, &mut failed);
        }
    }
    Ok(failed)
}

/// The UNet's widest self-attention (five heads of 64 per image, at the
/// latents of a `side`² image) in f16: the unfused ops, our flash kernel,
/// and the way the engine chooses.
fn time_attention(args: &PartsArgs, device: &Device) -> Result<()> {
    let tokens = (args.side / 8).pow(2);
    let [q, k, v] = attention_operands(args.batch * 5, tokens)?
        .map(|t| t.to_device(device).and_then(|t| t.to_dtype(DType::F16)));
    let (q, k, v) = (q?, k?, v?);
    let scale = 1.0 / (attention::FLASH_DEPTH as f64).sqrt();
    let ways: [AttentionRun; 3] = [
        (
            "unfused",
            Box::new(|| attention::unfused(&q, &k, &v, scale, Mask::None)),
        ),
        ("flash", Box::new(|| attention::flash(&q, &k, &v, scale))),
        (
            "as the engine runs it",
            Box::new(|| attention::attention(&q, &k, &v, scale, Mask::None)),
        ),
    ];
    for (label, way) in ways {
        let ms = synced_median_ms(args.repeats, device, || Ok(way()?));
        report_time(&format!("attention ({label})"), q.dims(), ms);
    }
    Ok(())
}

/// The VAE decoder of a model directory, step by step (post-quant 1×1
/// convolution, conv_in, each mid-block and up-block layer, the output norm
/// and conv_out), each step on the device fed the CPU's input to it, so an
/// error is the step's own and does not compound.
pub fn vae_trace(model: &std::path::Path, device: &Device) -> Result<()> {
    let files = wordup_engine::sd::source::ModelFiles::from_dir(
        model,
        wordup_engine::sd::source::Variant::Full,
    )?;
    let cfg: wordup_engine::sd::vae::Config = crate::read_config(model, "vae")?;
    let on = |d: &Device| -> Result<VarBuilder<'static>> {
        Ok(VarBuilder::from_tensors(
            candle_core::safetensors::load(&files.vae_weights, d)?,
            DType::F32,
            d,
        ))
    };
    let (cpu, dev) = (on(&Device::Cpu)?, on(device)?);
    type Step = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
    let build = |vb: &VarBuilder| -> candle_core::Result<Vec<(String, Step)>> {
        let conv = |i, o, k, vb: VarBuilder| {
            let cfg = candle_nn::Conv2dConfig {
                padding: k / 2,
                ..Default::default()
            };
            candle_nn::conv2d(i, o, k, cfg, vb)
        };
        let resnet = |i, o, vb: VarBuilder| {
            let cfg = ResnetBlock2DConfig {
                out_channels: Some(o),
                temb_channels: None,
                groups: cfg.norm_num_groups,
                ..Default::default()
            };
            ResnetBlock2D::new(vb, i, cfg)
        };
        let latent = cfg.latent_channels;
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let top = reversed[0];
        let d = vb.pp("decoder");
        let mut steps: Vec<(String, Step)> = Vec::new();
        let post = conv(latent, latent, 1, vb.pp("post_quant_conv"))?;
        steps.push(("post_quant_conv".into(), Box::new(move |x| post.forward(x))));
        let conv_in = conv(latent, top, 3, d.pp("conv_in"))?;
        steps.push(("conv_in".into(), Box::new(move |x| conv_in.forward(x))));
        let r0 = resnet(top, top, d.pp("mid_block.resnets.0"))?;
        steps.push(("mid.resnet0".into(), Box::new(move |x| r0.forward(x, None))));
        let attention =
            SelfAttention::new(top, cfg.norm_num_groups, d.pp("mid_block.attentions.0"))?;
        steps.push((
            "mid.attention".into(),
            Box::new(move |x| attention.forward(x)),
        ));
        let r1 = resnet(top, top, d.pp("mid_block.resnets.1"))?;
        steps.push(("mid.resnet1".into(), Box::new(move |x| r1.forward(x, None))));
        for (i, &out) in reversed.iter().enumerate() {
            let block = d.pp("up_blocks").pp(i);
            let mut input = if i == 0 { top } else { reversed[i - 1] };
            for j in 0..=cfg.layers_per_block {
                let r = resnet(input, out, block.pp("resnets").pp(j))?;
                steps.push((
                    format!("up{i}.resnet{j}"),
                    Box::new(move |x| r.forward(x, None)),
                ));
                input = out;
            }
            if i + 1 != reversed.len() {
                let c = conv(out, out, 3, block.pp("upsamplers.0.conv"))?;
                steps.push((
                    format!("up{i}.upsample"),
                    Box::new(move |x| {
                        let (_, _, h, w) = x.dims4()?;
                        c.forward(&x.upsample_nearest2d(2 * h, 2 * w)?)
                    }),
                ));
            }
        }
        let first = cfg.block_out_channels[0];
        let norm = candle_nn::group_norm(cfg.norm_num_groups, first, 1e-6, d.pp("conv_norm_out"))?;
        steps.push((
            "norm_out+silu".into(),
            Box::new(move |x| candle_nn::ops::silu(&norm.forward(x)?)),
        ));
        let conv_out = conv(first, cfg.out_channels, 3, d.pp("conv_out"))?;
        steps.push(("conv_out".into(), Box::new(move |x| conv_out.forward(x))));
        Ok(steps)
    };
    let (reference, actual) = (build(&cpu)?, build(&dev)?);
    let side = 16;
    let mut x = (Tensor::randn(
        0f32,
        1f32,
        (2, cfg.latent_channels, side, side),
        &Device::Cpu,
    )? / cfg.scaling_factor)?;
    // The steps must compose to the engine's decoder, or the trace says nothing.
    let decoded = wordup_engine::sd::vae::AutoEncoder::new(&cfg, cpu.clone())?.decode(&x)?;
    let mut line = Vec::new();
    for ((name, expected_step), (_, actual_step)) in reference.iter().zip(&actual) {
        let expected = expected_step(&x)?;
        let got = actual_step(&x.to_device(device)?)?;
        line.push(format!("{name}={:.1e}", relative_l2(&got, &expected)?));
        x = expected;
    }
    line.push(format!(
        "steps_vs_decoder={:.1e}",
        relative_l2(&x, &decoded)?
    ));
    println!("VAE_TRACE model={} {}", model.display(), line.join(" "));
    Ok(())
}
