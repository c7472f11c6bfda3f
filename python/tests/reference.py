"""float64 numpy references of batch normalization (PyTorch semantics).

Tensors are handled as (N, C, S) float64 arrays; helpers convert from the
shapes and layouts the tests use."""

import numpy as np


def to_ncs(x, channels_last=False):
    """(N, C, S) float64 view of an (N, C, ...) array, or of an (N, ..., C)
    array when channels_last."""
    x = np.asarray(x, np.float64)
    if channels_last and x.ndim > 2:
        x = np.moveaxis(x, -1, 1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def forward_training(x, weight=None, bias=None, running_mean=None, running_var=None,
                     momentum=0.1, eps=1e-5):
    """x (N, C, S). Returns y, mean, invstd, new running_mean, new running_var."""
    n, c, s = x.shape
    m = n * s
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))  # biased
    invstd = 1.0 / np.sqrt(var + eps)
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
    y = (x - mean[None, :, None]) * (invstd * w)[None, :, None] + b[None, :, None]
    rm = rv = None
    if running_mean is not None:
        rm = (1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean
        rv = (1 - momentum) * np.asarray(running_var, np.float64) + momentum * var * m / (m - 1)
    return y, mean, invstd, rm, rv


def forward_inference(x, running_mean, running_var, weight=None, bias=None, eps=1e-5):
    c = x.shape[1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
    rm = np.asarray(running_mean, np.float64)
    scale = w / np.sqrt(np.asarray(running_var, np.float64) + eps)
    return (x - rm[None, :, None]) * scale[None, :, None] + b[None, :, None]


def backward_training(x, dy, mean, invstd, weight=None):
    """Gradients of forward_training given its saved mean and invstd."""
    n, c, s = x.shape
    m = n * s
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    xc = x - mean[None, :, None]
    sdy = dy.sum(axis=(0, 2))
    sdyx = (dy * xc).sum(axis=(0, 2))
    dbias = sdy
    dweight = sdyx * invstd
    dx = (w * invstd)[None, :, None] * (dy - sdy[None, :, None] / m
                                        - xc * (invstd ** 2 * sdyx)[None, :, None] / m)
    return dx, dweight, dbias


def backward_inference(x, dy, running_mean, running_var, weight=None, eps=1e-5):
    c = x.shape[1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    dx = dy * (w * invstd)[None, :, None]
    dbias = dy.sum(axis=(0, 2))
    dweight = (dy * (x - np.asarray(running_mean, np.float64)[None, :, None])).sum(axis=(0, 2)) \
        * invstd
    return dx, dweight, dbias


def fold(conv_w, conv_b, running_mean, running_var, weight, bias, eps):
    """torch.nn.utils.fuse_conv_bn_weights for OIHW weights."""
    scale = weight / np.sqrt(running_var + eps)
    w = conv_w * scale.reshape((-1,) + (1,) * (conv_w.ndim - 1))
    b = ((conv_b if conv_b is not None else 0) - running_mean) * scale + bias
    return w, b


def bf16_round(a):
    """float32 -> bfloat16 bits (uint16), round to nearest even."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def maxdiff(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0
