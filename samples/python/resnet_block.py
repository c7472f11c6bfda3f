#!/usr/bin/env python3
"""conv -> BatchNorm2d -> ReLU, trained for a few SGD steps and then run in
eval(), with clbn doing the batch norm (and the ReLU, fused into it) on an
OpenCL device and numpy doing the 3x3 convolution on the host.

The same steps run in PyTorch when it is importable (else in a float64 numpy
model of the batch norm), and the script exits 1 when the results differ:
conv and batch-norm parameters, running statistics, eval outputs, and the eval
output of the convolution with the batch norm folded into it.

    PYTHONPATH=python python3 samples/python/resnet_block.py   (from the repository)
"""

import sys

import numpy as np
import pyopencl.array as cla

import clbn

N, CI, CO, H, W = 4, 3, 8, 8, 8
STEPS, LR, EPS, MOMENTUM = 3, 0.05, 1e-5, 0.1


def im2col(x):
    """(N, CI, H, W) -> (N, CI*9, H*W) for a 3x3 convolution with padding 1."""
    n, c, h, w = x.shape
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, c, 9, h * w), x.dtype)
    for k in range(9):
        i, j = divmod(k, 3)
        cols[:, :, k] = p[:, :, i:i + h, j:j + w].reshape(n, c, h * w)
    return cols.reshape(n, c * 9, h * w)


def conv(x, w, b=None):
    y = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), im2col(x))
    if b is not None:
        y = y + b[None, :, None]
    return y.reshape(x.shape[0], w.shape[0], x.shape[2], x.shape[3])


def conv_dweight(x, dy, wshape):
    return np.einsum("nop,nkp->ok", dy.reshape(dy.shape[0], dy.shape[1], -1),
                     im2col(x)).reshape(wshape)


def run_clbn(xs, x_eval, w0):
    """The block with clbn: returns conv weight, BN state dict, eval output, folded output."""
    ctx = clbn.default_context()
    q = ctx.queue
    bn = clbn.BatchNorm2d(CO, eps=EPS, momentum=MOMENTUM, fused="relu", context=q)
    w = w0.copy()
    for x in xs:
        h = cla.to_device(q, conv(x, w).astype(np.float32))
        y = bn(h)                                   # relu(bn(conv(x))) on the device
        # loss = 0.5*sum(y^2): dloss/dy = y
        dh = bn.backward(y)                         # dx, and bn.weight.grad / bn.bias.grad
        # SGD with pyopencl's own array arithmetic, on the layer's buffers
        bn.weight -= LR * bn.weight.grad
        bn.bias -= LR * bn.bias.grad
        bn.zero_grad()
        w -= LR * conv_dweight(x, dh.get().astype(np.float64), w.shape).astype(np.float32)
    bn.eval()
    y_eval = bn(cla.to_device(q, conv(x_eval, w).astype(np.float32))).get()
    # fold the eval-mode batch norm into the convolution: relu(conv'(x)) == y_eval
    fw, fb = bn.fold_into_conv(cla.to_device(q, w))
    y_fold = np.maximum(conv(x_eval, fw.get(), fb.get()), 0)
    return w, bn.state_dict(), y_eval, y_fold


def run_torch(torch, xs, x_eval, w0):
    cv = torch.nn.Conv2d(CI, CO, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(CO, eps=EPS, momentum=MOMENTUM)
    with torch.no_grad():
        cv.weight.copy_(torch.from_numpy(w0))
    opt = torch.optim.SGD(list(cv.parameters()) + list(bn.parameters()), lr=LR)
    for x in xs:
        y = torch.relu(bn(cv(torch.from_numpy(x))))
        opt.zero_grad()
        (0.5 * (y * y).sum()).backward()
        opt.step()
    bn.eval()
    with torch.no_grad():
        y_eval = torch.relu(bn(cv(torch.from_numpy(x_eval)))).numpy()
    sd = {k: v.numpy() for k, v in bn.state_dict().items()}
    return cv.weight.detach().numpy(), sd, y_eval


def run_numpy(xs, x_eval, w0):
    """float64 model of the same steps."""
    w = w0.astype(np.float64)
    g, b = np.ones(CO), np.zeros(CO)
    rm, rv, nbt = np.zeros(CO), np.ones(CO), 0
    for x in xs:
        h = conv(x.astype(np.float64), w)
        m = N * H * W
        mean = h.mean(axis=(0, 2, 3))
        var = h.var(axis=(0, 2, 3))
        inv = 1 / np.sqrt(var + EPS)
        xh = (h - mean[None, :, None, None]) * inv[None, :, None, None]
        y = np.maximum(xh * g[None, :, None, None] + b[None, :, None, None], 0)
        rm = (1 - MOMENTUM) * rm + MOMENTUM * mean
        rv = (1 - MOMENTUM) * rv + MOMENTUM * var * m / (m - 1)
        nbt += 1
        dy = np.where(y > 0, y, 0.0)
        db = dy.sum(axis=(0, 2, 3))
        dg = (dy * xh).sum(axis=(0, 2, 3))
        dh = (g * inv)[None, :, None, None] * (dy - db[None, :, None, None] / m
                                               - xh * dg[None, :, None, None] / m)
        w = w - LR * conv_dweight(x.astype(np.float64), dh, w.shape)
        g, b = g - LR * dg, b - LR * db
    h = conv(x_eval.astype(np.float64), w)
    y_eval = np.maximum((h - rm[None, :, None, None]) / np.sqrt(rv + EPS)[None, :, None, None]
                        * g[None, :, None, None] + b[None, :, None, None], 0)
    sd = dict(weight=g, bias=b, running_mean=rm, running_var=rv,
              num_batches_tracked=np.array(nbt))
    return w, sd, y_eval


def main():
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((N, CI, H, W)).astype(np.float32) for _ in range(STEPS)]
    x_eval = rng.standard_normal((N, CI, H, W)).astype(np.float32)
    w0 = (rng.standard_normal((CO, CI, 3, 3)) * 0.3).astype(np.float32)
    try:
        clbn.default_context()
    except clbn.Error as e:  # no OpenCL device: skipped (CTest's 77), as the C samples
        print("resnet_block: %s; skipped" % e)
        return 77
    w, sd, y_eval, y_fold = run_clbn(xs, x_eval, w0)
    try:
        import torch
        torch.manual_seed(0)
        rw, rsd, ry = run_torch(torch, xs, x_eval, w0)
        against = "PyTorch %s" % torch.__version__
    except ImportError:
        rw, rsd, ry = run_numpy(xs, x_eval, w0)
        against = "a float64 numpy model"
    diffs = {
        "conv weight": np.max(np.abs(w - rw)),
        "bn weight": np.max(np.abs(sd["weight"] - rsd["weight"])),
        "bn bias": np.max(np.abs(sd["bias"] - rsd["bias"])),
        "running_mean": np.max(np.abs(sd["running_mean"] - rsd["running_mean"])),
        "running_var": np.max(np.abs(sd["running_var"] - rsd["running_var"])),
        "eval output": np.max(np.abs(y_eval - ry)),
        "folded conv output": np.max(np.abs(y_fold - ry)),
    }
    print("clbn %s on %s, against %s:" % (clbn.version(), clbn.default_context().device.name,
                                         against))
    ok = int(sd["num_batches_tracked"]) == int(rsd["num_batches_tracked"]) == STEPS
    for k, v in diffs.items():
        scale = 1e-3 if k in ("eval output", "folded conv output", "bn bias") else 1e-4
        good = v <= scale
        ok &= good
        print("  %-20s max |diff| %.2e %s" % (k, v, "" if good else "  <-- too large"))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
