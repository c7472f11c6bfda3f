"""torch.nn.functional-style batch normalization on pyopencl arrays.

Every function here is asynchronous: it enqueues clbn's kernels on the queue
(default: the input array's queue) after the ``wait_for`` events and the
pending events of its arrays, and records the call's pyopencl.Event on the
arrays it writes (``y.events[-1]``), as pyopencl's own array operations do.
So clbn calls and your own kernels mix on one queue, in-order or not.
"""

import numpy as np

from . import _lib
import pyopencl.array as cla

from .context import (get_context, mem, vector_mem, empty_like, vector, run, param_dtype,
                      describe_view, array_view, is_dense, element_offset, dense_like)
from .plan import Plan, fused_code, update_code, plans_available

__all__ = ["batch_norm", "native_batch_norm", "batch_norm_backward", "fold_into_conv", "convert"]

_plan_cache = {}


def _options_default(fused, running_update):
    return fused_code(fused) == _lib.FUSED_NONE and update_code(running_update) == 0


def _plan(op, ctx, desc, eps, fused, running_update, views=None, renorm=False, skip=False,
          vbs=None):
    views = {k: tuple(v) for k, v in (views or {}).items()}
    key = (ctx.handle, op, desc.dtype, desc.layout, desc.n, desc.c, desc.spatial, float(eps),
           fused_code(fused), update_code(running_update), tuple(sorted(views.items())),
           bool(renorm), bool(skip), int(vbs or 0))
    p = _plan_cache.get(key)
    if p is None:
        if len(_plan_cache) > 256:
            _plan_cache.clear()
        p = _plan_cache[key] = Plan(op, desc, ctx, eps=eps, fused=fused,
                                    running_update=running_update, views=views,
                                    renorm=renorm, skip_nonfinite_update=skip,
                                    virtual_batch_size=vbs)
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


class _Views:
    """The views (element strides) and offsets of a call's tensors: x's
    description, and whether any tensor or vector needs the plan API (a
    non-dense view or a nonzero offset)."""

    def __init__(self, x, dtype, channels_last):
        self.channels_last = channels_last
        self.desc, strides, off = describe_view(x, dtype, channels_last)
        self.strides = {}
        self.plan = False
        self.add("x", x, strides, off)

    def add(self, name, a, strides=None, off=None, like="x"):
        if a is None:
            return
        if tuple(a.shape) != tuple(self.x_shape if name != "x" else a.shape):
            raise ValueError("%s must have %s's shape %s, got %s"
                             % (name, like, self.x_shape, tuple(a.shape)))
        if name == "x":
            self.x_shape, self.x_dtype = tuple(a.shape), a.dtype
        elif a.dtype != self.x_dtype:
            raise ValueError("%s must have x's dtype %s, got %s" % (name, self.x_dtype, a.dtype))
        if strides is None:
            strides, off = array_view(a, name, self.desc.layout == _lib.LAYOUT_NHWC
                                      and bool(self.channels_last))
        self.strides[name] = strides
        if off or not is_dense(strides, self.desc):
            self.plan = True

    def vector(self, v, count, pd, name):
        """Checks a per-channel vector (count values of pd, contiguous, at any
        element offset); returns its cl_mem for the one-call functions."""
        if v is None:
            return None
        if not isinstance(v, cla.Array):
            raise TypeError("%s must be a pyopencl.array.Array" % name)
        if v.size != count or v.dtype != pd:
            raise ValueError("%s must hold %d values of %s (got %d of %s)"
                             % (name, count, pd, v.size, v.dtype))
        if v.size > 1 and not v.flags.forc:
            raise ValueError("%s must be contiguous" % name)
        if v.offset:
            element_offset(v, name)
            if plans_available():
                self.plan = True  # an element offset in clbn_args, no sub-buffer
                return None
        return mem(v)

    def views(self):
        """The non-dense views, for Plan(views=...)."""
        return {k: v for k, v in self.strides.items() if not is_dense(v, self.desc)}


def _groups(desc, virtual_batch_size):
    """G = N/V for ghost batch norm (1 without); the library checks V."""
    if not virtual_batch_size:
        return 1
    v = int(virtual_batch_size)
    if v <= 0:
        raise ValueError("virtual_batch_size must be positive, got %r" % (virtual_batch_size,))
    return desc.n // v if desc.n % v == 0 else 1


def native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1,
                      eps=1e-5, *, out=None, dtype=None, channels_last=None, memory_format=None,
                      fused=None, z=None, running_update="pytorch", renorm=False,
                      renorm_rmax=1.0, renorm_dmax=0.0, skip_nonfinite_update=False,
                      skipped_updates=None, virtual_batch_size=None, queue=None,
                      wait_for=None):
    """torch.native_batch_norm: returns (y, save_mean, save_invstd).

    In training, save_mean and save_invstd are the batch's mean and
    1/sqrt(var + eps) (C values, float32 or float64), for batch_norm_backward;
    running_mean/running_var (when given) are updated in place. In eval they
    are None. ``fused`` ("relu" or "add_relu" with the residual ``z``) and
    ``running_update="onnx"`` need the plan API.

    Views: x, out, z and the per-channel vectors may be pyopencl arrays at an
    offset or with non-dense strides (``a[:, 64:128]``, transposes); they map
    to clbn's tensor views and element offsets (plan API). The default out is
    dense (C-contiguous, or channels-last when x's strides are).

    Variants (training; see docs/variants.md): ``renorm=True`` is batch
    renormalization with clips ``renorm_rmax`` >= 1 and ``renorm_dmax`` >= 0
    (needs the running statistics); it returns (y, save_mean, save_invstd,
    save_renorm), save_renorm holding r[C] then d[C], for
    batch_norm_backward(save_renorm=...). ``skip_nonfinite_update=True``
    leaves the running statistics of channels whose batch mean or variance is
    not finite unchanged, adding 1 to ``skipped_updates[c]`` (an optional
    uint32 array of C counters). ``virtual_batch_size=V`` (ghost batch norm)
    normalizes each group of V samples by itself; save_mean and save_invstd
    then hold (N/V)*C values, group-major."""
    cl_ = _channels_last(channels_last, memory_format)
    v = _Views(x, dtype, cl_)
    desc = v.desc
    ctx = get_context(queue or x)
    q = queue or x.queue or ctx.queue
    pd = param_dtype(desc.dtype)
    c = desc.c
    wm = v.vector(weight, c, pd, "weight")
    bm = v.vector(bias, c, pd, "bias")
    rm = v.vector(running_mean, c, pd, "running_mean")
    rv = v.vector(running_var, c, pd, "running_var")
    v.add("z", z)
    variant = bool(renorm or skip_nonfinite_update or virtual_batch_size)
    if skipped_updates is not None:
        if not skip_nonfinite_update:
            raise ValueError("skipped_updates needs skip_nonfinite_update=True")
        if skipped_updates.size != c or skipped_updates.dtype != np.uint32:
            raise ValueError("skipped_updates must hold %d uint32 counters" % c)
    if out is None:
        y = dense_like(x, desc, q) if v.plan else empty_like(x, q)
    else:
        y = out
    v.add("y", y, like="x")
    inputs = [x, z, weight, bias]
    default = _options_default(fused, running_update) and z is None and not v.plan
    if training:
        g = _groups(desc, virtual_batch_size)
        sm = vector(q, g * c, pd)
        si = vector(q, g * c, pd)
        sr = vector(q, 2 * c, pd) if renorm else None
        outs = [y, sm, si, running_mean, running_var]
        if default and not variant:
            run("clbn_forward_training", ctx.handle, q.int_ptr, desc, mem(x), mem(y), wm, bm, rm,
                rv, float(momentum), float(eps), mem(sm), mem(si), wait_for=wait_for,
                inputs=inputs, outputs=outs)
        else:
            _need_plans("fused, running_update, views or variant options")
            _plan(_lib.OP_FORWARD_TRAINING, ctx, desc, eps, fused, running_update, v.views(),
                  renorm, skip_nonfinite_update, virtual_batch_size).execute(
                q, wait_for, momentum, renorm_rmax, renorm_dmax, x=x, z=z, y=y, weight=weight,
                bias=bias, running_mean=running_mean, running_var=running_var, save_mean=sm,
                save_invstd=si, save_renorm=sr, skipped_updates=skipped_updates)
        return (y, sm, si, sr) if renorm else (y, sm, si)
    if running_mean is None or running_var is None:
        raise ValueError("running_mean and running_var must be given in eval mode "
                         "(training=False)")
    inputs += [running_mean, running_var]
    if default:
        run("clbn_forward_inference", ctx.handle, q.int_ptr, desc, mem(x), mem(y), wm, bm, rm,
            rv, float(eps), wait_for=wait_for, inputs=inputs, outputs=[y])
    else:
        _need_plans("fused options or views")
        _plan(_lib.OP_FORWARD_INFERENCE, ctx, desc, eps, fused, running_update,
              v.views()).execute(
            q, wait_for, 0.0, x=x, z=z, y=y, weight=weight, bias=bias,
            running_mean=running_mean, running_var=running_var)
    return (y, None, None, None) if renorm else (y, None, None)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, **kwargs):
    """torch.nn.functional.batch_norm on a pyopencl array: returns y.

    x: (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), float32, float16,
    float64, or uint16 with ``dtype=clbn.bfloat16``; NCHW-contiguous, or
    channels-last (strides as torch.channels_last, or a contiguous
    (N, *spatial, C) array with ``channels_last=True`` /
    ``memory_format="channels_last"``), or any view (a slice, a transpose, an
    array at an offset). Per-channel vectors are C float32 values (float64
    for float64 tensors). Keyword arguments as native_batch_norm (out, dtype,
    channels_last, memory_format, fused, z, running_update, renorm,
    renorm_rmax, renorm_dmax, skip_nonfinite_update, skipped_updates,
    virtual_batch_size, queue, wait_for)."""
    return native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum,
                             eps, **kwargs)[0]


def batch_norm_backward(dy, x, weight=None, running_mean=None, running_var=None, save_mean=None,
                        save_invstd=None, training=True, eps=1e-5,
                        output_mask=(True, True, True), *, dx=None, dtype=None,
                        channels_last=None, memory_format=None, fused=None, y=None,
                        save_renorm=None, virtual_batch_size=None, queue=None, wait_for=None):
    """torch.native_batch_norm_backward: returns (dx, dweight, dbias), each
    None where output_mask says so.

    training=True: the gradient of a training forward, from its save_mean and
    save_invstd. training=False: the gradient with frozen running statistics
    (running_mean, running_var and eps of the eval forward). With ``fused``
    the forward's output ``y`` is needed for the ReLU mask and the result is
    (dx, dweight, dbias, dz) (dz only for "add_relu"); that needs the plan API.
    ``save_renorm`` (from a renorm=True forward) makes it batch
    renormalization's backward (r and d constants); ``virtual_batch_size``
    must be the forward's. dy, x, y, dx and the vectors may be views, as in
    native_batch_norm; the default dx is dense."""
    cl_ = _channels_last(channels_last, memory_format)
    v = _Views(x, dtype, cl_)
    desc = v.desc
    v.add("dy", dy)
    v.add("y", y)
    ctx = get_context(queue or x)
    q = queue or x.queue or ctx.queue
    pd = param_dtype(desc.dtype)
    c = desc.c
    want_dx, want_dw, want_db = output_mask
    if want_dx and dx is None:
        dx = dense_like(x, desc, q) if v.plan else empty_like(x, q)
    elif not want_dx:
        dx = None
    v.add("dx", dx)
    dw = vector(q, c, pd) if want_dw else None
    db = vector(q, c, pd) if want_db else None
    wm = v.vector(weight, c, pd, "weight")
    inputs = [x, dy, weight]
    outs = [dx, dw, db]
    fcode = fused_code(fused)
    dz = None
    if fcode == _lib.FUSED_ADD_RELU:
        dz = dense_like(x, desc, q) if v.plan else empty_like(x, q)
        v.add("dz", dz)
    variant = save_renorm is not None or bool(virtual_batch_size)
    if training:
        if save_mean is None or save_invstd is None:
            raise ValueError("the training backward needs save_mean and save_invstd")
        g = _groups(desc, virtual_batch_size)
        smm = v.vector(save_mean, g * c, pd, "save_mean")
        sim = v.vector(save_invstd, g * c, pd, "save_invstd")
        if save_renorm is not None and (save_renorm.size != 2 * c or save_renorm.dtype != pd):
            raise ValueError("save_renorm must hold %d values of %s" % (2 * c, pd))
        inputs += [save_mean, save_invstd, save_renorm]
        if fcode == _lib.FUSED_NONE and not v.plan and not variant:
            run("clbn_backward", ctx.handle, q.int_ptr, desc, mem(x), mem(dy), mem(dx), wm, smm,
                sim, mem(dw), mem(db), wait_for=wait_for, inputs=inputs, outputs=outs)
        else:
            _need_plans("fused backward, views or variants")
            _plan(_lib.OP_BACKWARD, ctx, desc, eps, fused, "pytorch", v.views(),
                  save_renorm is not None, False, virtual_batch_size).execute(
                q, wait_for, 0.0, x=x, y=y, dy=dy, dx=dx, dz=dz, weight=weight,
                save_mean=save_mean, save_invstd=save_invstd, dweight=dw, dbias=db,
                save_renorm=save_renorm)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("the eval backward needs running_mean and running_var")
        rm = v.vector(running_mean, c, pd, "running_mean")
        rv = v.vector(running_var, c, pd, "running_var")
        inputs += [running_mean, running_var]
        if fcode == _lib.FUSED_NONE and not v.plan:
            run("clbn_backward_inference", ctx.handle, q.int_ptr, desc, mem(x), mem(dy), mem(dx),
                wm, rm, rv, float(eps), mem(dw), mem(db), wait_for=wait_for, inputs=inputs,
                outputs=outs)
        else:
            _need_plans("fused backward or views")
            _plan(_lib.OP_BACKWARD_INFERENCE, ctx, desc, eps, fused, "pytorch",
                  v.views()).execute(
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
