"""The diffusers side of scripts/gpu-check.sh: builds an SD-Turbo-sized
pipeline with random weights from the config files in scripts/bench/sd-turbo,
saves it as a diffusers model directory (which the candle side then loads:
both time the same weights), and times txt2img per batch size and step count.
Prints `RESULT torch e2e size=<px> batch=<n> steps=<k> ms=<median> images_per_s=<x>`."""
import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from sd_configs import load
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def build(configs, tokenizer_dir, device, dtype):
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**load(configs, "text_encoder")))
    unet = UNet2DConditionModel(**load(configs, "unet"))
    vae = AutoencoderKL(**load(configs, "vae"))
    tokenizer = CLIPTokenizer(
        str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        # SD-Turbo's own: Euler over trailing timesteps, v-prediction.
        scheduler=EulerDiscreteScheduler.from_config(load(configs, "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(device, dtype)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="scripts/bench/sd-turbo")
    parser.add_argument("--tokenizer", default="engine/tests/fixtures/clip-tokenizer")
    parser.add_argument("--save", required=True, help="where to write the model directory")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", default="1,4")
    parser.add_argument("--dtype", default="f16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    dtype = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {name} ({device}, {dtype})", file=sys.stderr)

    pipe = build(Path(args.configs), Path(args.tokenizer), device, dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(args.save, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; the engine reads the BPE files.
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(Path(args.tokenizer) / name, Path(args.save) / "tokenizer" / name)

    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            for steps in [int(s) for s in args.steps.split(",")]:

                def run():
                    # "np": decoded, post-processed and on the host, as the
                    # candle side's images are.
                    return pipe(
                        "a lighthouse at dusk, oil painting",
                        height=args.size,
                        width=args.size,
                        num_inference_steps=steps,
                        guidance_scale=0.0,
                        num_images_per_prompt=batch,
                        output_type="np",
                    ).images

                run()
                times = []
                for _ in range(max(args.repeats, 1)):
                    start = time.perf_counter()
                    run()
                    times.append((time.perf_counter() - start) * 1e3)
                ms = statistics.median(times)
                rate = batch / (ms / 1e3)
                print(f"{args.size}² batch {batch}, {steps} steps: {ms:.1f} ms, {rate:.2f} images/s", file=sys.stderr)
                print(f"RESULT torch e2e size={args.size} batch={batch} steps={steps} ms={ms:.2f} images_per_s={rate:.3f}")


if __name__ == "__main__":
    main()
