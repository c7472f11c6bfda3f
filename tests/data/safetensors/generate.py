#!/usr/bin/env python3
"""Writes the safetensors test files of tests/check_safetensors.c.

- From real torch.nn.BatchNorm state_dicts (needs PyTorch): bn2d.safetensors,
  model.safetensors (a whole nn.Sequential with metadata), bn1d_affine_false,
  bn2d_no_tracking and bn2d_f64, plus expected.txt (every value, as
  float.hex) and an eval() input/output pair for bn2d.
- Hand-made malformed variants of one small state (no PyTorch needed):
  malformed/*.safetensors and malformed/cases.txt (file, expected status).

The `safetensors` Python package is not in Debian, so the format is written
here by hand, the way its reference writer (safetensors.torch.save_file)
writes it: an 8-byte little-endian header length, compact JSON ("__metadata__"
first when given, then one entry per tensor in data order), padded with
spaces to a multiple of 8 bytes, then the data, ordered by dtype (widest
first, in the reference's dtype order) and then by name.

Usage: python3 tests/data/safetensors/generate.py [--out DIR]
(default DIR: this script's folder). With a pyenv python3 run Debian's
/usr/bin/python3, which has python3-torch. Two runs give the same bytes.
"""

import argparse
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# The reference's Dtype enum order (safetensors/src/tensor.rs); its writer
# sorts by this order, descending, then by name.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
               "I32", "U32", "F32", "F64", "I64", "U64"]


def header_bytes(header):
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return js + b" " * ((8 - len(js) % 8) % 8)


def serialize(tensors, metadata=None):
    """tensors: {name: (dtype string, shape list, raw little-endian bytes)}."""
    items = sorted(tensors.items(), key=lambda kv: (-DTYPE_ORDER.index(kv[1][0]), kv[0]))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, (dtype, shape, data) in items:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = header_bytes(header)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


# ---- Real BatchNorm state_dicts ------------------------------------------------

def from_torch(state_dict):
    import torch
    kinds = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"),
             torch.int64: ("I64", "<i8")}
    out = {}
    for name, t in state_dict.items():
        dtype, np_type = kinds[t.dtype]
        out[name] = (dtype, list(t.shape), t.detach().contiguous().numpy().astype(np_type).tobytes())
    return out


def randomize(bn, torch):
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)


def torch_files(out):
    import torch
    from torch import nn
    torch.set_num_threads(1)
    expected = ["# file prefix tensor values... (float.hex; num_batches_tracked as an integer)"]

    def record(fname, prefix, sd):
        for key, t in sd.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if name == "num_batches_tracked":
                vals = [str(int(t))]
            else:
                vals = [float(v).hex() for v in t.detach().double().flatten().tolist()]
            expected.append("%s %s %s %s" % (fname, prefix or "-", name, " ".join(vals)))

    def save(fname, sd, prefix="", metadata=None):
        write(os.path.join(out, fname), serialize(from_torch(sd), metadata))
        record(fname, prefix, sd)

    # A trained BatchNorm2d(8): three training steps.
    torch.manual_seed(7001)
    bn = nn.BatchNorm2d(8)
    randomize(bn, torch)
    bn.train()
    for _ in range(3):
        bn(torch.randn(4, 8, 5, 5) * 2 + 0.5)
    save("bn2d.safetensors", bn.state_dict())
    # Its eval() on a small batch, to check the loaded layer computes the same.
    bn.eval()
    x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        y = bn(x)
    x.numpy().astype("<f4").tofile(os.path.join(out, "bn2d_eval_x.f32"))
    y.numpy().astype("<f4").tofile(os.path.join(out, "bn2d_eval_y.f32"))

    # A whole model, with metadata as Hugging Face writes it: BN under "1.".
    torch.manual_seed(7002)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    randomize(model[1], torch)
    model.train()
    for _ in range(2):
        model(torch.randn(2, 3, 6, 6))
    save("model.safetensors", model.state_dict(), "1.", {"format": "pt"})

    # BatchNorm1d(5, affine=False): running statistics only.
    torch.manual_seed(7003)
    bn = nn.BatchNorm1d(5, affine=False)
    bn.train()
    for _ in range(2):
        bn(torch.randn(6, 5) * 3 - 1)
    save("bn1d_affine_false.safetensors", bn.state_dict())

    # BatchNorm2d(6, track_running_stats=False): weight and bias only.
    torch.manual_seed(7004)
    bn = nn.BatchNorm2d(6, track_running_stats=False)
    randomize(bn, torch)
    save("bn2d_no_tracking.safetensors", bn.state_dict())

    # A float64 BatchNorm2d(4) (model.double()): F64 tensors.
    torch.manual_seed(7005)
    bn = nn.BatchNorm2d(4).double()
    randomize(bn, torch)
    bn.train()
    bn(torch.randn(3, 4, 2, 2, dtype=torch.float64))
    save("bn2d_f64.safetensors", bn.state_dict())

    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write("\n".join(expected) + "\n")


# ---- Malformed variants (no PyTorch) ------------------------------------------

C = 4


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def base_tensors():
    """A valid BatchNorm2d(4) state under the prefix "bn.", and a conv weight."""
    return {
        "bn.weight": ("F32", [C], f32([1.5, 0.5, 1.25, 0.75])),
        "bn.bias": ("F32", [C], f32([0.25, -0.25, 0.125, -0.125])),
        "bn.running_mean": ("F32", [C], f32([1.0, -2.0, 3.0, -4.0])),
        "bn.running_var": ("F32", [C], f32([0.5, 2.0, 4.0, 8.0])),
        "bn.num_batches_tracked": ("I64", [], struct.pack("<q", 12)),
        "conv.weight": ("F32", [C, 2], f32([0.0] * 8)),
    }


def raw(header_text, data=b"", length=None):
    """A file with this exact header text (no padding added)."""
    h = header_text.encode("utf-8")
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def layout(tensors):
    """The header dict and data of a valid file, in the reference order."""
    blob = serialize(tensors)
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def with_header(header, data, pad=True):
    h = header_bytes(header) if pad else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def malformed_files(out):
    d = os.path.join(out, "malformed")
    os.makedirs(d, exist_ok=True)
    cases = []

    def case(name, status, blob, why):
        write(os.path.join(d, name + ".safetensors"), blob)
        cases.append("%s %s %s" % (name, status, why))

    good = serialize(base_tensors())
    hdr, data = layout(base_tensors())
    case("valid", "CLBN_SUCCESS", good, "the base file all others are made from")

    # Valid too: metadata, extra padding, another entry order, an unknown dtype.
    t = base_tensors()
    t["extra.scale"] = ("F4", [4], b"\x12\x34")
    blob = serialize({k: v for k, v in t.items() if k != "extra.scale"}, {"format": "pt"})
    n = struct.unpack("<Q", blob[:8])[0]
    h = json.loads(blob[8:8 + n])
    end = len(blob) - 8 - n
    h["extra.scale"] = {"dtype": "F4", "shape": [4], "data_offsets": [end, end + 2]}
    rev = dict(reversed(list(h.items())))
    text = json.dumps(rev, indent=1).encode() + b"          "
    case("valid_variants", "CLBN_SUCCESS", struct.pack("<Q", len(text)) + text + blob[8 + n:] + b"\x12\x34",
         "metadata, pretty JSON, reversed order, padding, an unknown dtype elsewhere")

    F = "CLBN_ERROR_SAFETENSORS_FORMAT"
    case("empty", F, b"", "0 bytes")
    case("short", F, b"\x10\x00\x00", "shorter than the length field")
    case("length_huge", F, struct.pack("<Q", 2 ** 63 + 5) + good[8:], "header length 2^63+5")
    case("length_max", F, struct.pack("<Q", 2 ** 64 - 1) + good[8:], "header length 2^64-1")
    case("length_beyond_file", F, struct.pack("<Q", len(good)) + good[8:], "header longer than the file")
    case("length_over_limit", F, struct.pack("<Q", 100000001) + good[8:], "header over 100 MB")
    case("length_short", F, struct.pack("<Q", 16) + good[8:], "header cut inside the JSON")
    case("header_only", F, good[:8 + struct.unpack("<Q", good[:8])[0]], "no data at all")
    case("truncated_data", F, good[:-3], "the data cut short")
    case("not_json", F, raw("{this is not json}   ", data), "not JSON")
    case("json_array", F, raw("[1, 2, 3]       ", data), "JSON, not an object")
    case("json_string", F, raw('"bn.weight"     ', data), "a JSON string")
    case("unterminated", F, raw('{"bn.weight": {"dtype": "F32"', data), "unterminated object")
    case("garbage_after", F, raw(json.dumps(hdr) + " x", data), "something after the object")
    case("two_objects", F, raw(json.dumps(hdr) + "{}", data), "two objects")
    case("nul_in_header", F, raw(json.dumps(hdr) + "\0     ", data), "a NUL byte in the padding")
    h2 = dict(hdr)
    h2["bn.weight\u0000x"] = h2.pop("conv.weight")
    case("escaped_nul_name", F, with_header(h2, data), "a name with \\u0000 in it")

    def edit(name, status, why, fn, new_data=None):
        h = json.loads(json.dumps(hdr))
        fn(h)
        case(name, status, with_header(h, data if new_data is None else new_data), why)

    def set_offsets(key, b, e):
        def fn(h):
            h[key]["data_offsets"] = [b, e]
        return fn

    wb, we = hdr["bn.weight"]["data_offsets"]
    edit("offsets_beyond_data", F, "end past the data", set_offsets("conv.weight", hdr["conv.weight"]["data_offsets"][0], len(data) + 32))
    edit("offsets_huge", F, "end 2^64-1", set_offsets("bn.weight", wb, 2 ** 64 - 1))
    edit("offsets_reversed", F, "begin > end", set_offsets("bn.weight", we, wb))
    edit("offsets_negative", F, "begin < 0", set_offsets("bn.weight", -16, 0))
    edit("offsets_float", F, "begin 0.5", set_offsets("bn.weight", wb + 0.5, we))
    edit("offsets_overlap", F, "weight overlaps bias",
         set_offsets("bn.weight", hdr["bn.bias"]["data_offsets"][0], hdr["bn.bias"]["data_offsets"][1]))

    def hole(h):
        for k in h:
            b, e = h[k]["data_offsets"]
            h[k]["data_offsets"] = [b + 8 if b >= we else b, e + 8 if e >= we and b >= we else e]
    edit("hole", F, "8 unowned bytes after bn.weight", hole, data[:we] + b"\0" * 8 + data[we:])
    case("trailing_data", F, good + b"\0" * 4, "4 bytes after the last tensor")

    def one(key, field, value):
        def fn(h):
            h[key][field] = value
        return fn
    edit("size_mismatch", F, "shape [4] F32 over 12 bytes", set_offsets("bn.weight", wb, wb + 12))
    edit("shape_negative", F, "shape [-4]", one("bn.bias", "shape", [-4]))
    edit("shape_float", F, "shape [4.5]", one("bn.bias", "shape", [4.5]))
    edit("shape_string", F, "shape [\"4\"]", one("bn.bias", "shape", ["4"]))
    edit("shape_not_array", F, "shape 4", one("bn.bias", "shape", 4))
    edit("shape_overflow", F, "a shape whose product overflows", one("conv.weight", "shape", [2 ** 53, 2 ** 53, 2 ** 20, 8]))
    edit("offsets_one", F, "data_offsets [0]", one("bn.bias", "data_offsets", [0]))
    edit("offsets_three", F, "data_offsets of 3 numbers", one("bn.bias", "data_offsets", [0, 16, 16]))
    edit("dtype_number", F, "dtype 5", one("bn.bias", "dtype", 5))
    edit("dtype_missing", F, "no dtype", lambda h: h["bn.bias"].pop("dtype"))
    edit("entry_number", F, "an entry that is a number", lambda h: h.__setitem__("bn.bias", 5))
    edit("metadata_number", F, "__metadata__ with a number value", lambda h: h.__setitem__("__metadata__", {"a": 1}))
    edit("metadata_array", F, "__metadata__ an array", lambda h: h.__setitem__("__metadata__", ["pt"]))
    dup = json.dumps(hdr)[:-1] + ',"bn.bias":' + json.dumps(hdr["bn.bias"]) + "}"
    case("duplicate_name", F, raw(dup + " " * ((8 - len(dup) % 8) % 8), data), "bn.bias twice")
    t = base_tensors()
    t["bn.num_batches_tracked"] = ("I64", [], struct.pack("<q", -1))
    case("negative_count", F, serialize(t), "num_batches_tracked -1")

    M = "CLBN_ERROR_STATE_MISMATCH"
    for name, key, new, why in [
        ("dtype_f64", "bn.weight", ("F64", [C], struct.pack("<4d", 1, 1, 1, 1)), "weight F64"),
        ("dtype_f16", "bn.running_var", ("F16", [C], b"\0\x3c" * C), "running_var F16"),
        ("dtype_i32_count", "bn.num_batches_tracked", ("I32", [], struct.pack("<i", 3)), "num_batches_tracked I32"),
        ("shape_5", "bn.weight", ("F32", [5], f32([1.0] * 5)), "weight [5]"),
        ("shape_2d", "bn.running_mean", ("F32", [C, 1], f32([0.0] * C)), "running_mean [4, 1]"),
        ("shape_scalar", "bn.bias", ("F32", [], f32([0.0])), "bias []"),
        ("count_shape_1", "bn.num_batches_tracked", ("I64", [1], struct.pack("<q", 3)), "num_batches_tracked [1]"),
    ]:
        t = base_tensors()
        t[key] = new
        case(name, M, serialize(t), why)

    N = "CLBN_ERROR_TENSOR_NOT_FOUND"
    for name, key in [("missing_bias", "bn.bias"), ("missing_running_var", "bn.running_var"),
                      ("missing_count", "bn.num_batches_tracked")]:
        t = base_tensors()
        del t[key]
        case(name, N, serialize(t), "no " + key)
    t = {k.replace("bn.", "bn1."): v for k, v in base_tensors().items()}
    case("other_prefix", N, serialize(t), "the state under bn1.")
    case("no_tensors", N, serialize({}), "{} and no data")

    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("# file status why: each is loaded into BatchNorm2d(4) with prefix \"bn.\"\n")
        f.write("\n".join(cases) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--malformed-only", action="store_true",
                    help="only the hand-made files (no PyTorch needed)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    malformed_files(args.out)
    if not args.malformed_only:
        torch_files(args.out)


if __name__ == "__main__":
    main()
