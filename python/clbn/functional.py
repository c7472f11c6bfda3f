"""torch.nn.functional-style batch normalization on pyopencl arrays.

Every function here is asynchronous: it enqueues clbn's kernels on the queue
(default: the input array's queue) after the ``wait_for`` events and the
pending events of its arrays, and records the call's pyopencl.Event on the
arrays it writes (``y.events[-1]``), as pyopencl's own array operations do.
So clbn calls and your own kernels mix on one queue, in-order or not.
"""

import numpy as np

from . import _lib
from .context import (get_context, describe, mem, vector_mem, empty_like, vector, run,
                      param_dtype)
from .plan import Plan, fused_code, update_code, plans_available

__all__ = ["batch_norm", "native_batch_norm", "batch_norm_backward", "fold_into_conv", "convert"]

_plan_cache = {}


def _options_default(fused, running_update):
    return fused_code(fused) == _lib.FUSED_NONE and update_code(running_update) == 0


def _plan(op, ctx, desc, eps, fused, running_update):
    key = (ctx.handle, op, desc.dtype, desc.layout, desc.n, desc.c, desc.spatial, float(eps),
           fused_code(fused), update_code(running_update))
    p = _plan_cache.get(key)
    if p is None:
        if len(_plan_cache) > 256:
            _plan_cache.clear()
        p = _plan_cache[key] = Plan(op, desc, ctx, eps=eps, fused=fused,
                                    running_update=running_update)
    return p


def _need_plans(what):
    if not plans_available():
        raise NotImplementedError("%s needs clbn's execution plans (clbn_plan_create), "
                                  "which this libclbn lacks" % what)


def _channels_last(channels_last, memory_format):
    if memory_format is not None:
        mf = str(memory_format).split(".")[-1]
        if mf not in ("channels_last", "channels_last_3d", "contiguous_format"):
            raise ValueError("memory_format must be 'channels_last' or 'contiguous_format'")
        return mf != "contiguous_format"
    return channels_last


def native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1,
                      eps=1e-5, *, out=None, dtype=None, channels_last=None, memory_format=None,
                      fused=None, z=None, running_update="pytorch", queue=None, wait_for=None):
    """torch.native_batch_norm: returns (y, save_mean, save_invstd).

    In training, save_mean and save_invstd are the batch's mean and
    1/sqrt(var + eps) (C values, float32 or float64), for batch_norm_backward;
    running_mean/running_var (when given) are updated in place. In eval they
    are None. ``fused`` ("relu" or "add_relu" with the residual ``z``) and
    ``running_update="onnx"`` need the plan API."""
    cl_ = _channels_last(channels_last, memory_format)
    desc = describe(x, dtype, cl_)
    ctx = get_context(queue or x)
    q = queue or x.queue or ctx.queue
    pd = param_dtype(desc.dtype)
    c = desc.c
    wm = vector_mem(weight, c, pd, "weight")
    bm = vector_mem(bias, c, pd, "bias")
    rm = vector_mem(running_mean, c, pd, "running_mean")
    rv = vector_mem(running_var, c, pd, "running_var")
    if z is not None and tuple(z.shape) != tuple(x.shape):
        raise ValueError("z must have x's shape")
    y = out if out is not None else empty_like(x, q)
    if tuple(y.shape) != tuple(x.shape) or y.dtype != x.dtype or y.strides != x.strides:
        raise ValueError("out must have x's shape, dtype and strides")
    inputs = [x, z, weight, bias]
    default = _options_default(fused, running_update)
    if training:
        sm = vector(q, c, pd)
        si = vector(q, c, pd)
        outs = [y, sm, si, running_mean, running_var]
        if default and z is None:
            run("clbn_forward_training", ctx.handle, q.int_ptr, desc, mem(x), mem(y), wm, bm, rm,
                rv, float(momentum), float(eps), mem(sm), mem(si), wait_for=wait_for,
                inputs=inputs, outputs=outs)
        else:
            _need_plans("fused or running_update options")
            _plan(_lib.OP_FORWARD_TRAINING, ctx, desc, eps, fused, running_update).execute(
                q, wait_for, momentum, x=x, z=z, y=y, weight=weight, bias=bias,
                running_mean=running_mean, running_var=running_var, save_mean=sm,
                save_invstd=si)
        return y, sm, si
    if running_mean is None or running_var is None:
        raise ValueError("running_mean and running_var must be given in eval mode "
                         "(training=False)")
    inputs += [running_mean, running_var]
    if default and z is None:
        run("clbn_forward_inference", ctx.handle, q.int_ptr, desc, mem(x), mem(y), wm, bm, rm,
            rv, float(eps), wait_for=wait_for, inputs=inputs, outputs=[y])
    else:
        _need_plans("fused options")
        _plan(_lib.OP_FORWARD_INFERENCE, ctx, desc, eps, fused, running_update).execute(
            q, wait_for, 0.0, x=x, z=z, y=y, weight=weight, bias=bias,
            running_mean=running_mean, running_var=running_var)
    return y, None, None


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, **kwargs):
    """torch.nn.functional.batch_norm on a pyopencl array: returns y.

    x: (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), float32, float16,
    float64, or uint16 with ``dtype=clbn.bfloat16``; NCHW-contiguous, or
    channels-last (strides as torch.channels_last, or a contiguous
    (N, *spatial, C) array with ``channels_last=True`` /
    ``memory_format="channels_last"``). Per-channel vectors are C float32
    values (float64 for float64 tensors). Keyword arguments as
    native_batch_norm (out, dtype, channels_last, memory_format, fused, z,
    running_update, queue, wait_for)."""
    return native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum,
                             eps, **kwargs)[0]


def batch_norm_backward(dy, x, weight=None, running_mean=None, running_var=None, save_mean=None,
                        save_invstd=None, training=True, eps=1e-5,
                        output_mask=(True, True, True), *, dx=None, dtype=None,
                        channels_last=None, memory_format=None, fused=None, y=None,
                        queue=None, wait_for=None):
    """torch.native_batch_norm_backward: returns (dx, dweight, dbias), each
    None where output_mask says so.

    training=True: the gradient of a training forward, from its save_mean and
    save_invstd. training=False: the gradient with frozen running statistics
    (running_mean, running_var and eps of the eval forward). With ``fused``
    the forward's output ``y`` is needed for the ReLU mask and the result is
    (dx, dweight, dbias, dz) (dz only for "add_relu"); that needs the plan API."""
    cl_ = _channels_last(channels_last, memory_format)
    desc = describe(x, dtype, cl_)
    if tuple(dy.shape) != tuple(x.shape) or dy.dtype != x.dtype or dy.strides != x.strides:
        raise ValueError("dy must have x's shape, dtype and strides")
    ctx = get_context(queue or x)
    q = queue or x.queue or ctx.queue
    pd = param_dtype(desc.dtype)
    c = desc.c
    want_dx, want_dw, want_db = output_mask
    if want_dx and dx is None:
        dx = empty_like(x, q)
    elif not want_dx:
        dx = None
    dw = vector(q, c, pd) if want_dw else None
    db = vector(q, c, pd) if want_db else None
    wm = vector_mem(weight, c, pd, "weight")
    inputs = [x, dy, weight]
    outs = [dx, dw, db]
    fcode = fused_code(fused)
    dz = None
    if fcode == _lib.FUSED_ADD_RELU:
        dz = empty_like(x, q)
    if training:
        if save_mean is None or save_invstd is None:
            raise ValueError("the training backward needs save_mean and save_invstd")
        smm = vector_mem(save_mean, c, pd, "save_mean")
        sim = vector_mem(save_invstd, c, pd, "save_invstd")
        inputs += [save_mean, save_invstd]
        if fcode == _lib.FUSED_NONE:
            run("clbn_backward", ctx.handle, q.int_ptr, desc, mem(x), mem(dy), mem(dx), wm, smm,
                sim, mem(dw), mem(db), wait_for=wait_for, inputs=inputs, outputs=outs)
        else:
            _need_plans("fused backward")
            _plan(_lib.OP_BACKWARD, ctx, desc, eps, fused, "pytorch").execute(
                q, wait_for, 0.0, x=x, y=y, dy=dy, dx=dx, dz=dz, weight=weight,
                save_mean=save_mean, save_invstd=save_invstd, dweight=dw, dbias=db)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("the eval backward needs running_mean and running_var")
        rm = vector_mem(running_mean, c, pd, "running_mean")
        rv = vector_mem(running_var, c, pd, "running_var")
        inputs += [running_mean, running_var]
        if fcode == _lib.FUSED_NONE:
            run("clbn_backward_inference", ctx.handle, q.int_ptr, desc, mem(x), mem(dy), mem(dx),
                wm, rm, rv, float(eps), mem(dw), mem(db), wait_for=wait_for, inputs=inputs,
                outputs=outs)
        else:
            _need_plans("fused backward")
            _plan(_lib.OP_BACKWARD_INFERENCE, ctx, desc, eps, fused, "pytorch").execute(
                q, wait_for, 0.0, x=x, y=y, dy=dy, dx=dx, dz=dz, weight=weight,
                running_mean=running_mean, running_var=running_var, dweight=dw, dbias=db)
    if fcode != _lib.FUSED_NONE:
        return dx, dw, db, dz
    return dx, dw, db


_WLAYOUT = {"oihw": _lib.WEIGHTS_OIHW, "ohwi": _lib.WEIGHTS_OHWI, "hwio": _lib.WEIGHTS_HWIO}


def conv_weight_desc(conv_weight, out_channels, layout, dtype=None):
    from .context import dtype_code
    lay = _WLAYOUT[layout.lower()] if isinstance(layout, str) else int(layout)
    if lay == _lib.WEIGHTS_HWIO:
        o = conv_weight.shape[-1]
    else:
        o = conv_weight.shape[0]
    if o != out_channels:
        raise ValueError("the weights have %d output channels, the batch norm %d"
                         % (o, out_channels))
    if not conv_weight.flags.c_contiguous:
        raise ValueError("conv_weight must be contiguous")
    return _lib.ConvWeightDesc(dtype_code(dtype if dtype is not None else conv_weight.dtype,
                                          conv_weight), lay, o, conv_weight.size // o)


def fold_into_conv(conv_weight, conv_bias, running_mean, running_var, weight=None, bias=None,
                   eps=1e-5, *, layout="oihw", inplace=False, dtype=None, queue=None,
                   wait_for=None):
    """torch.nn.utils.fuse_conv_bn_weights on pyopencl arrays: returns
    (folded_weight, folded_bias) such that conv'(x) == bn(conv(x)) in eval.
    layout: "oihw" (PyTorch Conv/Linear weights), "ohwi" or "hwio"."""
    c = running_mean.size
    wdesc = conv_weight_desc(conv_weight, c, layout, dtype)
    ctx = get_context(queue or conv_weight)
    q = queue or conv_weight.queue or ctx.queue
    pd = param_dtype(wdesc.dtype)
    if inplace:
        fw, fb = None, None
        if conv_bias is None:
            fb = vector(q, c, conv_weight.dtype)
    else:
        fw = empty_like(conv_weight, q)
        fb = vector(q, c, conv_weight.dtype)
    if conv_bias is not None and (conv_bias.size != c or conv_bias.dtype != conv_weight.dtype):
        raise ValueError("conv_bias must hold %d values of the weights' dtype" % c)
    run("clbn_fold_into_conv", ctx.handle, q.int_ptr, wdesc, mem(conv_weight), mem(conv_bias),
        mem(fw), mem(fb), vector_mem(weight, c, pd, "weight"), vector_mem(bias, c, pd, "bias"),
        vector_mem(running_mean, c, pd, "running_mean"),
        vector_mem(running_var, c, pd, "running_var"), float(eps), wait_for=wait_for,
        inputs=[conv_weight, conv_bias, weight, bias, running_mean, running_var],
        outputs=[fw if fw is not None else conv_weight, fb if fb is not None else conv_bias])
    return (fw if fw is not None else conv_weight), (fb if fb is not None else conv_bias)


def convert(x, to, *, dtype=None, out=None, queue=None, wait_for=None):
    """clbn_convert: x converted to element type `to` on the device (float16,
    bfloat16 and float64 from or to float32), with the rounding the batch-norm
    kernels use. `dtype` names x's type when it is bfloat16 (uint16 arrays).
    Returns a new array of x's shape (uint16 for bfloat16)."""
    from .context import dtype_code
    src = dtype_code(dtype if dtype is not None else x.dtype, x)
    dst = dtype_code(to)
    npdt = {_lib.FLOAT32: np.float32, _lib.FLOAT16: np.float16, _lib.FLOAT64: np.float64,
            _lib.BFLOAT16: np.uint16}[dst]
    if not x.flags.forc:
        raise ValueError("x must be dense")
    ctx = get_context(queue or x)
    q = queue or x.queue or ctx.queue
    if out is None:
        import pyopencl.array as cla
        out = cla.empty(q, x.shape, npdt, allocator=x.allocator)
    elif out.size != x.size or out.dtype != np.dtype(npdt):
        raise ValueError("out must hold %d values of %s" % (x.size, np.dtype(npdt)))
    run("clbn_convert", ctx.handle, q.int_ptr, src, mem(x), dst, mem(out), x.size,
        wait_for=wait_for, inputs=[x], outputs=[out])
    return out
