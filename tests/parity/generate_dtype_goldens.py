#!/usr/bin/env python3
"""Writes the bfloat16 and float64 goldens of tests/check_dtypes.c.

torch.nn.BatchNorm2d(4) in train() on x of shape (2, 4, 5, 5), one step with
momentum 0.1, then the backward of (y * dy).sum(). Two cases:
  bfloat16/: the module and x in bfloat16 (weights chosen bfloat16-exact);
             every tensor stored as little-endian float32 (exact: bf16 widens).
  float64/:  the module and x in float64; tensors stored as little-endian float64.
Files: x, dy, weight, bias, y, running_mean, running_var, dx, dweight, dbias (.bin),
logical NCHW order. Run with Debian's python3-torch:
    /usr/bin/python3 tests/parity/generate_dtype_goldens.py [OUT_DIR]
"""
import os
import sys

import torch


def write(path, t, dtype):
    t.detach().to(dtype).contiguous().numpy().astype(
        '<f4' if dtype == torch.float32 else '<f8').tofile(path)


def case(out, dtype, store):
    torch.manual_seed(7)
    bn = torch.nn.BatchNorm2d(4).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(4) + 0.5)
        bn.bias.copy_(torch.rand(4) - 0.5)
    x = (torch.randn(2, 4, 5, 5) * 2 + 1).to(dtype).requires_grad_(True)
    dy = torch.randn(2, 4, 5, 5).to(dtype)
    bn.train()
    y = bn(x)
    (y * dy).sum().backward()
    os.makedirs(out, exist_ok=True)
    for name, t in [('x', x), ('dy', dy), ('weight', bn.weight), ('bias', bn.bias), ('y', y),
                    ('running_mean', bn.running_mean), ('running_var', bn.running_var),
                    ('dx', x.grad), ('dweight', bn.weight.grad), ('dbias', bn.bias.grad)]:
        write(os.path.join(out, name + '.bin'), t, store)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'dtypes')
    torch.set_num_threads(1)
    case(os.path.join(root, 'bfloat16'), torch.bfloat16, torch.float32)
    case(os.path.join(root, 'float64'), torch.float64, torch.float64)
    print('wrote', root, 'with torch', torch.__version__)


if __name__ == '__main__':
    main()
