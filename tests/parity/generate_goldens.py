#!/usr/bin/env python3
"""Generates clbn's PyTorch parity goldens (tests/parity/data/<case>/).

Each case drives a torch.nn.BatchNorm{1,2,3}d module through a few train() /
eval() steps and records, step by step, what the module saw and produced:
inputs, outputs, running statistics, num_batches_tracked and, for steps with
a backward pass, the upstream gradient and the gradients of the input, weight
and bias. tests/check_parity.c replays the same steps on a clbn_layer and
compares every recorded tensor. The format is described in README.md.

Usage: python3 tests/parity/generate_goldens.py [--out DIR]
(default DIR: the data/ folder next to this script). Needs PyTorch; only run to
regenerate the goldens, never at test time.
"""

import argparse
import os
import shutil
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Case:
    """Collects one case's scalars and tensors and writes them out."""

    def __init__(self, name, module, bn, seed):
        self.name = name
        self.lines = [
            "# clbn PyTorch parity golden, written by tests/parity/generate_goldens.py",
            "case %s" % name,
            "torch_version %s" % torch.__version__,
            "seed %d" % seed,
            "module %s" % module,
            "num_features %d" % bn.num_features,
            "eps %r" % float(bn.eps),
            "momentum %s" % ("none" if bn.momentum is None else repr(float(bn.momentum))),
            "affine %d" % int(bn.affine),
            "track_running_stats %d" % int(bn.track_running_stats),
        ]
        self.tensors = []  # (name, file, tensor)
        self.steps = 0

    def scalar(self, key, value):
        self.lines.append("%s %s" % (key, value))

    def tensor(self, name, t):
        # A copy: running statistics and .grad change in place after this call.
        t = t.detach().to(torch.float32).contiguous().clone()
        fname = name.replace(".", "_") + ".bin"
        self.tensors.append((name, fname, t))
        self.lines.append("tensor %s %s float32 %s" % (name, fname, " ".join(str(d) for d in t.shape)))

    def write(self, root):
        d = os.path.join(root, self.name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for _, fname, t in self.tensors:
            # numpy's '<f4' is little-endian float32 whatever the host's order.
            t.numpy().astype("<f4").tofile(os.path.join(d, fname))
        self.lines.insert(10, "steps %d" % self.steps)
        with open(os.path.join(d, "case.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def randomize_affine(bn):
    """Non-trivial weight and bias, so that affine is exercised."""
    if bn.affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)


def channel_data(shape, spread=1.0):
    """Normal data with a different mean and spread in each channel (dim 1),
    so that a kernel mixing channels up gets different numbers."""
    c = shape[1]
    view = [1, c] + [1] * (len(shape) - 2)
    mean = (torch.rand(c) * 2 - 1) * spread
    std = torch.rand(c) * 1.5 + 0.5
    return torch.randn(*shape) * std.view(view) + mean.view(view)


def record_stats(case, k, bn):
    if bn.track_running_stats:
        case.tensor("s%d.running_mean" % k, bn.running_mean)
        case.tensor("s%d.running_var" % k, bn.running_var)
        case.scalar("s%d.num_batches_tracked" % k, int(bn.num_batches_tracked))


def bn_step(case, bn, x, train, backward=False):
    """One forward of `bn` on x (and optionally backward of (y * g).sum())."""
    case.steps += 1
    k = case.steps
    bn.train(train)
    case.scalar("s%d.mode" % k, "train" if train else "eval")
    case.scalar("s%d.backward" % k, int(backward))
    if bn.affine:
        bn.weight.grad = None
        bn.bias.grad = None
    x = x.clone().requires_grad_(backward)
    y = bn(x)
    case.tensor("s%d.x" % k, x)
    case.tensor("s%d.y" % k, y)
    record_stats(case, k, bn)
    if backward:
        g = torch.randn(*y.shape)
        (y * g).sum().backward()
        case.tensor("s%d.dy" % k, g)
        case.tensor("s%d.dx" % k, x.grad)
        if bn.affine:
            case.tensor("s%d.dweight" % k, bn.weight.grad)
            case.tensor("s%d.dbias" % k, bn.bias.grad)
    return y


def new_case(name, module, bn, seed):
    case = Case(name, module, bn, seed)
    if bn.affine:
        case.tensor("weight", bn.weight)
        case.tensor("bias", bn.bias)
    return case


# ---- The cases ---------------------------------------------------------------

# The training batch of conv_bn_relu. The brief asked for (4, 3, 32, 32), but
# BN's input, the block output, the upstream gradient and dx would then be
# 1 MiB each (64 channels of 32x32) and the data would exceed its 3 MB budget;
# N = 2 keeps m = N*H*W = 2048 values per channel and the data at ~2.7 MB.
CONV_BATCH = 2


def case_conv_bn_relu():
    seed = 1001
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 64, 3, padding=1)
    bn = nn.BatchNorm2d(64)
    relu = nn.ReLU()
    block = nn.Sequential(conv, bn, relu)
    randomize_affine(bn)
    case = new_case("conv_bn_relu", "BatchNorm2d", bn, seed)
    case.scalar("fused", "relu")

    # Step 1: train(), forward, backward of (out * g).sum().
    block.train()
    case.steps += 1
    x = torch.randn(CONV_BATCH, 3, 32, 32)
    h = block[0](x)  # BN's input (the conv output)
    h.retain_grad()
    out = block[2](block[1](h))  # what block(x) computes, with h kept
    g = torch.randn(*out.shape)
    (out * g).sum().backward()
    case.scalar("s1.mode", "train")
    case.scalar("s1.backward", 1)
    case.tensor("s1.x", h)
    case.tensor("s1.y", out)
    record_stats(case, 1, bn)
    case.tensor("s1.dy", g)
    case.tensor("s1.dx", h.grad)
    case.tensor("s1.dweight", bn.weight.grad)
    case.tensor("s1.dbias", bn.bias.grad)

    # Step 2: eval() on x2.
    block.eval()
    case.steps += 1
    with torch.no_grad():
        x2 = torch.randn(1, 3, 32, 32)
        h2 = block[0](x2)
        out2 = block(x2)
        assert torch.equal(out2, block[2](block[1](h2)))
    case.scalar("s2.mode", "eval")
    case.scalar("s2.backward", 0)
    case.tensor("s2.x", h2)
    case.tensor("s2.y", out2)
    return case


def case_bn1d_nc():
    seed = 1002
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(10)
    randomize_affine(bn)
    case = new_case("bn1d_nc", "BatchNorm1d", bn, seed)
    bn_step(case, bn, channel_data((16, 10)), True, backward=True)
    bn_step(case, bn, channel_data((5, 10)), False)
    return case


def case_bn1d_ncl():
    seed = 1003
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(6)
    randomize_affine(bn)
    case = new_case("bn1d_ncl", "BatchNorm1d", bn, seed)
    bn_step(case, bn, channel_data((8, 6, 12)), True, backward=True)
    bn_step(case, bn, channel_data((8, 6, 12)), False)
    return case


def case_bn3d():
    seed = 1004
    torch.manual_seed(seed)
    bn = nn.BatchNorm3d(4)
    randomize_affine(bn)
    case = new_case("bn3d", "BatchNorm3d", bn, seed)
    bn_step(case, bn, channel_data((2, 4, 3, 5, 6)), True, backward=True)
    return case


def case_momentum_none():
    seed = 1005
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(3, momentum=None)
    randomize_affine(bn)
    case = new_case("momentum_none", "BatchNorm2d", bn, seed)
    for _ in range(5):
        bn_step(case, bn, channel_data((4, 3, 5, 5)), True)
    return case


def case_affine_false():
    seed = 1006
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(5, affine=False)
    case = new_case("affine_false", "BatchNorm2d", bn, seed)
    bn_step(case, bn, channel_data((4, 5, 6, 6)), True)
    bn_step(case, bn, channel_data((2, 5, 6, 6)), False)
    return case


def case_no_tracking_eval():
    seed = 1007
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(5, track_running_stats=False)
    randomize_affine(bn)
    case = new_case("no_tracking_eval", "BatchNorm2d", bn, seed)
    assert bn.running_mean is None and bn.running_var is None
    bn_step(case, bn, channel_data((3, 5, 4, 4)), False)
    return case


def case_eval_backward():
    seed = 1008
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(4)
    randomize_affine(bn)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    case = new_case("eval_backward", "BatchNorm2d", bn, seed)
    case.tensor("running_mean_init", bn.running_mean)
    case.tensor("running_var_init", bn.running_var)
    bn_step(case, bn, channel_data((2, 4, 6, 6)), False, backward=True)
    return case


def case_momentum_custom():
    seed = 1009
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(4, momentum=0.3, eps=1e-3)
    randomize_affine(bn)
    case = new_case("momentum_custom", "BatchNorm2d", bn, seed)
    bn_step(case, bn, channel_data((3, 4, 5, 7)), True)
    bn_step(case, bn, channel_data((3, 4, 5, 7)), True)
    return case


CASES = [
    case_conv_bn_relu,
    case_bn1d_nc,
    case_bn1d_ncl,
    case_bn3d,
    case_momentum_none,
    case_affine_false,
    case_no_tracking_eval,
    case_eval_backward,
    case_momentum_custom,
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "data"),
                    help="output folder (default: tests/parity/data)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for make in CASES:
        case = make()
        case.write(args.out)
        size = sum(t.numel() * 4 for _, _, t in case.tensors)
        total += size
        print("%-18s %8d bytes in %2d tensors" % (case.name, size, len(case.tensors)))
    print("total %d bytes, torch %s, into %s" % (total, torch.__version__, args.out))


if __name__ == "__main__":
    sys.exit(main())
