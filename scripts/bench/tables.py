"""Markdown tables from the `RESULT <side> <what> key=value...` lines that
sd-bench and the diffusers scripts print, candle against PyTorch.
  python3 tables.py stages RESULTS   # per stage: ms, ratio >1 = candle slower
  python3 tables.py e2e RESULTS      # whole txt2img: images/s, ratio <1 = candle slower
"""
import sys

STAGE_ORDER = {"text_encoder": 0, "unet_step": 1, "vae_decode": 2, "taesd_decode": 3, "txt2img": 4}


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
    print("| stage | size | batch | candle ms | PyTorch ms | candle/PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    for (stage, size, batch, _), sides in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], STAGE_ORDER[kv[0][0]])):
        c = float(sides["candle"]["ms"]) if "candle" in sides else None
        t = float(sides["torch"]["ms"]) if "torch" in sides else None
        print(f"| {stage} | {size if size else '-'} | {batch} | {c or 0:.1f} | {t or 0:.1f} | {ratio(c, t)} |")


def e2e(path):
    rows = read(path, lambda what: what == "e2e")
    print("| size | batch | steps | candle images/s | PyTorch images/s | candle/PyTorch |")
    print("|---:|---:|---:|---:|---:|---:|")
    for (_, size, batch, steps), sides in sorted(rows.items()):
        c = float(sides["candle"]["images_per_s"]) if "candle" in sides else None
        t = float(sides["torch"]["images_per_s"]) if "torch" in sides else None
        print(f"| {size}² | {batch} | {steps} | {c or 0:.2f} | {t or 0:.2f} | {ratio(c, t)} |")


if __name__ == "__main__":
    {"stages": stages, "e2e": e2e}[sys.argv[1]](sys.argv[2])
