"""Per-stage timings of diffusers/transformers (PyTorch) on an SD-Turbo-sized
model with random weights, from the same config files as the Rust side.
Prints `RESULT torch <stage> size=<px> batch=<n> ms=<median>` lines. The
draft decoder (TAESD, `taesd_decode`) is timed where the configs have one;
`txt2img` is the whole one-step pipeline (prompt, one UNet step without
guidance, VAE decode) on the same models."""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from sd_configs import has, load
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# The prompt sd-bench's txt2img stage draws.
PROMPT = "a lighthouse at dusk, oil painting"


def median_ms(repeats, device, run):
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="scripts/bench/sd-turbo")
    parser.add_argument("--tokenizer", default="engine/tests/fixtures/clip-tokenizer")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--dtype", default="f32")
    args = parser.parse_args()
    device = "cuda" if args.gpu and torch.cuda.is_available() else "cpu"
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype, torch.float32)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device} {dtype}", file=sys.stderr)
    configs = Path(args.configs)
    encoder = CLIPTextModel(CLIPTextConfig(**load(configs, "text_encoder"))).to(device, dtype).eval()
    unet = UNet2DConditionModel(**load(configs, "unet")).to(device, dtype).eval()
    vae = AutoencoderKL(**load(configs, "vae")).to(device, dtype).eval()
    # The draft decoder takes the same latents as the VAE.
    taesd = AutoencoderTiny(**load(configs, "taesd")).to(device, dtype).eval() if has(configs, "taesd") else None
    if taesd is None:
        print(f"no taesd config in {configs}: skipping taesd_decode", file=sys.stderr)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    tokenizer_dir = Path(args.tokenizer)
    tokenizer = CLIPTokenizer(
        str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(load(configs, "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    with torch.inference_mode():
        ids = torch.tensor([[min(320 + i * 7, 49406) for i in range(77)]], device=device)
        ms = median_ms(args.repeats, device, lambda: encoder(ids).last_hidden_state)
        print(f"text encoder: {ms:.0f} ms", file=sys.stderr)
        print(f"RESULT torch text_encoder size=0 batch=1 ms={ms:.2f}")
        context = encoder(ids).last_hidden_state
        for side in [int(s) for s in args.sizes.split(",")]:
            latent = side // scale
            for batch in [int(b) for b in args.batches.split(",")]:
                latents = torch.randn(batch, 4, latent, latent, device=device, dtype=dtype)
                ctx = context.repeat(batch, 1, 1)
                ms = median_ms(args.repeats, device, lambda: unet(latents, 999, encoder_hidden_states=ctx).sample)
                print(f"unet step {side}² batch {batch}: {ms:.0f} ms", file=sys.stderr)
                print(f"RESULT torch unet_step size={side} batch={batch} ms={ms:.2f}")
                ms = median_ms(args.repeats, device, lambda: vae.decode(latents).sample)
                print(f"vae decode {side}² batch {batch}: {ms:.0f} ms", file=sys.stderr)
                print(f"RESULT torch vae_decode size={side} batch={batch} ms={ms:.2f}")
                if taesd is not None:
                    ms = median_ms(args.repeats, device, lambda: taesd.decode(latents).sample)
                    print(f"taesd decode {side}² batch {batch}: {ms:.0f} ms", file=sys.stderr)
                    print(f"RESULT torch taesd_decode size={side} batch={batch} ms={ms:.2f}")

                def txt2img():
                    # "pt": images in [0, 1], NCHW, where the pipeline ran, as
                    # sd-bench's are.
                    return pipe(
                        PROMPT,
                        height=side,
                        width=side,
                        num_inference_steps=1,
                        guidance_scale=0.0,
                        num_images_per_prompt=batch,
                        output_type="pt",
                    ).images

                ms = median_ms(args.repeats, device, txt2img)
                print(f"txt2img 1 step {side}² batch {batch}: {ms:.0f} ms", file=sys.stderr)
                print(f"RESULT torch txt2img size={side} batch={batch} ms={ms:.2f}")


if __name__ == "__main__":
    main()
