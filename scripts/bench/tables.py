"""Markdown tables from the `RESULT <side> <what> key=value...` lines that
sd-bench and the diffusers scripts print, candle against PyTorch.
  python3 tables.py stages RESULTS   # per stage: ms, ratio >1 = candle slower
  python3 tables.py e2e RESULTS      # whole txt2img: images/s, ratio <1 = candle slower
Each row also gives the achieved TFLOPS as a share of the card's peak
(PEAK_TFLOPS, default 989: an H100/H200's dense f16 tensor-core rate).
"""
import os
import sys

STAGE_ORDER = {"text_encoder": 0, "unet_step": 1, "vae_decode": 2, "taesd_decode": 3, "txt2img": 4}


# TFLOP per image (per prompt for the text encoder) of the SD-Turbo (SD 2.1)
# architecture at 512², counted from its layers (2 FLOP per multiply-add):
# the UNet per step (~0.8, no guidance), the VAE decoder (~2.5, two thirds of
# it at 256² and 512²), TAESD's decoder (~0.14), the OpenCLIP-H text encoder
# at 77 tokens (~0.05). Image stages scale with the pixel count, about (the
# attention's share grows faster, but is small at these sizes).
TFLOP_AT_512 = {"text_encoder": 0.05, "unet_step": 0.8, "vae_decode": 2.5, "taesd_decode": 0.14}
PEAK_TFLOPS = float(os.environ.get("PEAK_TFLOPS", "989"))


def stage_tflop(stage, size, batch):
    if stage == "text_encoder":
        return TFLOP_AT_512[stage] * batch
    return TFLOP_AT_512[stage] * batch * (size / 512) ** 2


def txt2img_tflop(size, steps):
    """One image: its prompt, `steps` UNet steps and the VAE decode."""
    scale = (size / 512) ** 2
    return TFLOP_AT_512["text_encoder"] + (TFLOP_AT_512["unet_step"] * steps + TFLOP_AT_512["vae_decode"]) * scale


def share(tflop, seconds):
    """Achieved TFLOPS and its share of the peak, as a table cell."""
    if not tflop or not seconds:
        return "n/a"
    tflops = tflop / seconds
    return f"{tflops:.1f} ({100 * tflops / PEAK_TFLOPS:.1f}%)"


def read(path, keep):
    rows = {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 4 or parts[0] != "RESULT" or not keep(parts[2]):
            continue
        fields = dict(p.split("=", 1) for p in parts[3:])
        key = (parts[2], int(fields["size"]), int(fields.get("batch", 1)), int(fields.get("steps", 0)))
        rows.setdefault(key, {})[parts[1]] = fields
    return rows


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def stages(path):
    rows = read(path, lambda what: what in STAGE_ORDER)
    print("| stage | size | batch | candle ms | PyTorch ms | candle/PyTorch | candle TFLOPS (of peak) | PyTorch TFLOPS (of peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (stage, size, batch, _), sides in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], STAGE_ORDER[kv[0][0]])):
        c = float(sides["candle"]["ms"]) if "candle" in sides else None
        t = float(sides["torch"]["ms"]) if "torch" in sides else None
        tflop = stage_tflop(stage, size or 512, batch) if stage in TFLOP_AT_512 else None
        cells = [share(tflop, c and c / 1000), share(tflop, t and t / 1000)]
        print(f"| {stage} | {size if size else '-'} | {batch} | {c or 0:.1f} | {t or 0:.1f} | {ratio(c, t)} | {' | '.join(cells)} |")


def e2e(path):
    rows = read(path, lambda what: what == "e2e")
    print("| size | batch | steps | candle images/s | PyTorch images/s | candle/PyTorch | candle TFLOPS (of peak) | PyTorch TFLOPS (of peak) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (_, size, batch, steps), sides in sorted(rows.items()):
        c = float(sides["candle"]["images_per_s"]) if "candle" in sides else None
        t = float(sides["torch"]["images_per_s"]) if "torch" in sides else None
        tflop = txt2img_tflop(size, steps)
        cells = [share(tflop, c and 1 / c), share(tflop, t and 1 / t)]
        print(f"| {size}² | {batch} | {steps} | {c or 0:.2f} | {t or 0:.2f} | {ratio(c, t)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    {"stages": stages, "e2e": e2e}[sys.argv[1]](sys.argv[2])
