#!/usr/bin/env python3
"""Writes the PyTorch goldens of samples/conv_bn_relu.c.

The module is nn.Sequential(Conv2d(3, 64, 3, padding=1), BatchNorm2d(64),
ReLU()) with "trained" parameters: the BN's weight ~U(0.5, 1.5), bias
~U(-0.5, 0.5), running_mean ~U(-0.2, 0.2), running_var ~U(0.5, 2) and
num_batches_tracked 10, as if loaded from a checkpoint. Written to
samples/goldens/conv_bn_relu/ (or --out DIR), all raw little-endian float32
in PyTorch's contiguous NCHW order unless said otherwise:

  model.safetensors    the module's state_dict before the steps (safetensors,
                       written by hand as safetensors.torch.save_file would;
                       the BN's keys are "1.weight", "1.bias", ...)
  conv_weight.f32      (64, 3, 3, 3), OIHW
  conv_bias.f32        (64)
  x_train.f32          (4, 3, 32, 32)   the train() step's input
  y_train.f32          (4, 64, 32, 32)  its output
  running_mean.f32     (64)             BN's running statistics after it
  running_var.f32      (64)
  x_eval.f32           (1, 3, 32, 32)   the eval() step's input
  y_eval.f32           (1, 64, 32, 32)  its output
  case.txt             provenance

Usage: /usr/bin/python3 samples/goldens/make_conv_bn_relu.py [--out DIR]
(Debian's python3-torch; a pyenv python3 has no torch). Two runs give the
same bytes.
"""

import argparse
import json
import os
import struct

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
               "I32", "U32", "F32", "F64", "I64", "U64"]


def save_safetensors(state_dict, path):
    """safetensors.torch.save_file, by hand (the package is not in Debian)."""
    kinds = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}
    items = []
    for name, t in state_dict.items():
        dtype, np_type = kinds[t.dtype]
        items.append((name, dtype, list(t.shape),
                      t.detach().contiguous().numpy().astype(np_type).tobytes()))
    items.sort(key=lambda it: (-DTYPE_ORDER.index(it[1]), it[0]))
    header, offset = {}, 0
    for name, dtype, shape, data in items:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(it[3] for it in items))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "conv_bn_relu"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)

    def f32(name, t):
        t.detach().contiguous().numpy().astype("<f4").tofile(os.path.join(out, name))

    seed = 2024
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
    bn = model[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(10)
    save_safetensors(model.state_dict(), os.path.join(out, "model.safetensors"))
    f32("conv_weight.f32", model[0].weight)
    f32("conv_bias.f32", model[0].bias)

    # train(): one forward on a batch of 4; BN uses batch statistics and
    # updates its running statistics (momentum 0.1, unbiased variance).
    model.train()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    f32("x_train.f32", x)
    f32("y_train.f32", y)
    f32("running_mean.f32", bn.running_mean)
    f32("running_var.f32", bn.running_var)
    assert int(bn.num_batches_tracked) == 11

    # eval(): one forward on a batch of 1 with the running statistics.
    model.eval()
    x2 = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y2 = model(x2)
    f32("x_eval.f32", x2)
    f32("y_eval.f32", y2)

    with open(os.path.join(out, "case.txt"), "w") as f:
        f.write("# samples/conv_bn_relu.c goldens, written by samples/goldens/make_conv_bn_relu.py\n")
        f.write("module Sequential(Conv2d(3,64,3,padding=1),BatchNorm2d(64),ReLU())\n")
        f.write("seed %d\ntorch_version %s\n" % (seed, torch.__version__))
        f.write("train_batch 4\neval_batch 1\nnum_batches_tracked_before 10\n")


if __name__ == "__main__":
    main()
