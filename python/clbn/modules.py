"""nn.BatchNorm1d/2d/3d over clbn_layer (the C layer owns the device buffers)."""

import collections
import ctypes
import json
import os
import struct
import tempfile
import weakref

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import _lib
from .context import (get_context, describe, mem, empty_like, run, dtype_code, param_dtype,
                      events_of, describe_view, array_view, is_dense, dense_like)
from . import _plan_abi
from .functional import conv_weight_desc, vector
from .plan import fused_code

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "update_bn"]

_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class _BatchNorm:
    """Common part of BatchNorm1d/2d/3d; see BatchNorm2d."""

    _ndims = None  # accepted input ranks

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32, channels_last=False,
                 fused=None, renorm=False, renorm_rmax=1.0, renorm_dmax=0.0,
                 skip_nonfinite_update=False, virtual_batch_size=None, context=None,
                 queue=None):
        lib = _lib.load()
        self._lib = lib
        self._pending = []  # events of population_accumulate (nothing records them)
        if queue is None and isinstance(context, cl.CommandQueue):
            queue = context
        if queue is not None:
            context = context or queue
        self.context = get_context(context)
        self.queue = queue if queue is not None else self.context.queue
        self.num_features = int(num_features)
        self._eps = float(eps)
        self._momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = dtype
        self._code = dtype_code(dtype)
        self.param_dtype = param_dtype(self._code)
        self.channels_last = channels_last
        cfg = _lib.LayerConfig(self.num_features, self._eps,
                               _lib.MOMENTUM_CUMULATIVE if momentum is None else float(momentum),
                               int(self.affine), int(self.track_running_stats), self._code,
                               int(bool(skip_nonfinite_update)), int(bool(renorm)),
                               float(renorm_rmax), float(renorm_dmax),
                               int(virtual_batch_size or 0))
        if virtual_batch_size:
            from . import _plan_abi
            if not _plan_abi.knows("virtual_batch_size"):
                raise NotImplementedError("this libclbn has no virtual_batch_size")
        self.renorm = bool(renorm)
        self.skip_nonfinite_update = bool(skip_nonfinite_update)
        self.virtual_batch_size = int(virtual_batch_size) if virtual_batch_size else None
        self._renorm_clip = (float(renorm_rmax), float(renorm_dmax))
        handle = ctypes.c_void_p()
        _lib.check(lib.clbn_layer_create(self.context.handle, ctypes.byref(cfg),
                                         ctypes.byref(handle)), "clbn_layer_create")
        self._handle = handle.value
        # The layer keeps a pointer to the context: the finalizer holds the
        # context so that it is released after the layer.
        self._finalizer = weakref.finalize(self, _release_layer, lib, self._handle, self.context)
        self.fused = None
        if fused:
            self.set_fused(fused)
        self.weight = self._wrap(_lib.WEIGHT) if self.affine else None
        self.bias = self._wrap(_lib.BIAS) if self.affine else None
        self.running_mean = self._wrap(_lib.RUNNING_MEAN) if self.track_running_stats else None
        self.running_var = self._wrap(_lib.RUNNING_VAR) if self.track_running_stats else None
        if self.affine:
            # PyTorch's param.grad: the layer's gradient accumulators.
            self.weight.grad = self._wrap(_lib.GRAD_WEIGHT)
            self.bias.grad = self._wrap(_lib.GRAD_BIAS)
        self._saved = None
        self._views_set = False  # clbn_layer_set_views holds views

    # The C layer takes eps and momentum at creation: read-only here (PyTorch
    # lets them be assigned; make a new module, or load_state_dict into one).
    @property
    def eps(self):
        return self._eps

    @property
    def momentum(self):
        return self._momentum

    # -- buffers ---------------------------------------------------------
    def _wrap(self, which):
        ptr = self._lib.clbn_layer_get_buffer(self._handle, which)
        buf = cl.Buffer.from_int_ptr(ptr, retain=True)
        return cla.Array(self.queue, (self.num_features,), self.param_dtype, data=buf)

    @property
    def weight_grad(self):
        return self.weight.grad if self.affine else None

    @property
    def bias_grad(self):
        return self.bias.grad if self.affine else None

    def _arrays(self):
        out = [a for a in (self.weight, self.bias, self.running_mean, self.running_var)
               if a is not None]
        if self.affine:
            out += [self.weight.grad, self.bias.grad]
        return out

    def _sync(self):
        """Waits for the layer's work enqueued through pyopencl-visible events."""
        for a in self._arrays():
            a.finish()
        pending, self._pending = self._pending, []
        if pending:
            cl.wait_for_events(pending)

    # -- mode ------------------------------------------------------------
    @property
    def training(self):
        return bool(self._lib.clbn_layer_is_training(self._handle))

    @training.setter
    def training(self, mode):
        _lib.call("clbn_layer_set_training", self._handle, int(bool(mode)))

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def set_fused(self, fused):
        """Fuses "relu" or "add_relu" (residual z given to forward) into the
        forward (clbn_layer_set_fused_op); None removes it."""
        _lib.call("clbn_layer_set_fused_op", self._handle, fused_code(fused))
        self.fused = fused or None

    # -- variants (docs/variants.md) -------------------------------------
    def set_renorm_clip(self, rmax, dmax):
        """Batch renormalization's clips for the next training forwards
        (rmax >= 1, dmax >= 0; Ioffe 2017 ramps them up from 1 and 0 during
        training). clbn.Error (CLBN_ERROR_INVALID_OPTION) without renorm or
        with values out of range, the clips unchanged."""
        _lib.call("clbn_layer_set_renorm_clip", self._handle, float(rmax), float(dmax))
        self._renorm_clip = (float(rmax), float(dmax))

    @property
    def renorm_clip(self):
        """(rmax, dmax) in force."""
        return self._renorm_clip

    @property
    def skipped_updates(self):
        """Per channel, how many training forwards left its running statistics
        unchanged because its batch mean or variance was not finite (a numpy
        uint32 array; needs skip_nonfinite_update=True). Waits for the layer."""
        self._sync()
        counts = np.zeros(self.num_features, np.uint32)
        _lib.call("clbn_layer_skipped_updates", self._handle, counts.ctypes.data,
                  self.num_features)
        return counts

    # -- population statistics (PreciseBN, update_bn) ---------------------
    def population_begin(self):
        """Starts recomputing the running statistics from batches
        (clbn_layer_population_begin): empties the accumulator; the mode,
        parameters and running statistics are untouched."""
        self._sync()
        _lib.call("clbn_layer_population_begin", self._handle)

    def population_accumulate(self, x, *, queue=None, wait_for=None):
        """Adds batch x (any N, either layout; shapes may vary) to the
        accumulator; reads x only. Returns the event."""
        self._check_input(x)
        desc = describe(x, self.dtype if self._code == _lib.BFLOAT16 else None,
                        True if self.channels_last and x.flags.c_contiguous else None)
        q = queue or x.queue or self.queue
        self._set_views(desc, {})  # the accumulation takes dense tensors
        ev = run("clbn_layer_population_accumulate", self._handle, q.int_ptr, desc, mem(x),
                 wait_for=wait_for, inputs=[x] + self._arrays(), outputs=[])
        self._pending.append(ev)
        return ev

    def population_commit(self, mode="exact"):
        """Writes running_mean and running_var from the batches accumulated
        since population_begin and sets num_batches_tracked to their number.
        mode "exact": the mean and unbiased variance of all the values seen;
        "batch_average": the average of the batch means and unbiased batch
        variances (torch.optim.swa_utils.update_bn, PreciseBN). Blocking."""
        code = population_mode(mode)
        self._sync()
        _lib.call("clbn_layer_population_commit", self._handle, code)

    @property
    def num_batches_tracked(self):
        return int(self._lib.clbn_layer_num_batches_tracked(self._handle))

    # -- compute ---------------------------------------------------------
    def _check_input(self, x):
        if self._ndims is not None and len(x.shape) not in self._ndims:
            raise ValueError("%s expects %s-dimensional input (got %d)"
                             % (type(self).__name__, " or ".join(map(str, self._ndims)),
                                len(x.shape)))

    def _describe(self, x):
        """(desc, strides, offset) of input x: a dense x as describe() takes it,
        a slice, transpose or array at an offset as a view."""
        return describe_view(x, self.dtype if self._code == _lib.BFLOAT16 else None,
                             True if self.channels_last and x.flags.c_contiguous else None)

    def _set_views(self, desc, arrays):
        """Sets the layer's views (clbn_layer_set_views) for the next call from
        `arrays` (name -> array or None); dense arrays at offset 0 need none,
        and a layer that needs none is set back to dense."""
        v = _plan_abi.LayerViews()
        needed = False
        for name, a in arrays.items():
            if a is None:
                continue
            strides, off = array_view(
                a, name, True if self.channels_last and a.flags.c_contiguous else None)
            if not is_dense(strides, desc):
                setattr(v, name, _plan_abi.TensorView(*strides))
                needed = True
            if off:
                setattr(v, name + "_offset", off)
                needed = True
        if needed or self._views_set:
            _lib.call("clbn_layer_set_views", self._handle,
                      ctypes.byref(v) if needed else None)
            self._views_set = needed
        # with views the call takes whole buffers (the offsets are in the views)
        return (lambda a: None if a is None else a.base_data.int_ptr) if needed else mem

    def forward(self, x, z=None, *, out=None, queue=None, wait_for=None):
        """y = bn(x) (relu(bn(x) [+ z]) when fused); updates the running
        statistics in training. Enqueued on `queue` (default x's queue); the
        event is recorded on y (y.events[-1]). x (and y when fused) are kept
        for backward()."""
        self._check_input(x)
        desc, xs, xo = self._describe(x)
        q = queue or x.queue or self.queue
        dense_x = is_dense(xs, desc) and xo == 0
        y = out if out is not None else (empty_like(x, q) if dense_x else dense_like(x, desc, q))
        if tuple(y.shape) != tuple(x.shape) or (z is not None and tuple(z.shape) != tuple(x.shape)):
            raise ValueError("out and z must have x's shape")
        m = self._set_views(desc, {"x": x, "y": y, "z": z})
        outs = [y] + self._arrays()
        if z is None:
            run("clbn_layer_forward", self._handle, q.int_ptr, desc, m(x), m(y),
                wait_for=wait_for, inputs=[x], outputs=outs)
        else:
            run("clbn_layer_forward_ex", self._handle, q.int_ptr, desc, m(x), m(z), m(y),
                wait_for=wait_for, inputs=[x, z], outputs=outs)
        self._saved = (x, y, desc)
        return y

    __call__ = forward

    def backward(self, dy, *, x=None, dx=None, want_dz=None, queue=None, wait_for=None):
        """Gradient of the latest forward: returns dx (and (dx, dz) for a
        fused "add_relu" layer) and accumulates the weight and bias gradients
        into weight.grad and bias.grad (as autograd does). x defaults to the
        input of the latest forward."""
        if self._saved is None and x is None:
            raise RuntimeError("backward() before forward()")
        sx, _sy, sdesc = self._saved if self._saved is not None else (None, None, None)
        x = x if x is not None else sx
        desc, xs, xo = self._describe(x)
        if tuple(dy.shape) != tuple(x.shape) or (dx is not None and tuple(dx.shape) != tuple(x.shape)):
            raise ValueError("dy and dx must have x's shape")
        q = queue or dy.queue or self.queue
        dense_x = is_dense(xs, desc) and xo == 0
        new = (lambda: empty_like(x, q)) if dense_x else (lambda: dense_like(x, desc, q))
        dx = dx if dx is not None else new()
        add_relu = fused_code(self.fused) == _lib.FUSED_ADD_RELU
        want_dz = add_relu if want_dz is None else want_dz
        dz = new() if want_dz else None
        m = self._set_views(desc, {"x": x, "dy": dy, "dx": dx, "dz": dz})
        outs = [dx] + self._arrays()
        if want_dz:
            run("clbn_layer_backward_ex", self._handle, q.int_ptr, desc, m(x), m(dy),
                m(dx), m(dz), wait_for=wait_for, inputs=[x, dy, _sy],
                outputs=outs + [dz])
            return dx, dz
        run("clbn_layer_backward", self._handle, q.int_ptr, desc, m(x), m(dy), m(dx),
            wait_for=wait_for, inputs=[x, dy, _sy], outputs=outs)
        return dx

    def zero_grad(self, set_to_none=False):
        """Sets the weight and bias gradients to 0 (set_to_none is not
        supported: the layer's gradient buffers always exist)."""
        self._sync()
        _lib.call("clbn_layer_zero_grad", self._handle)

    def reset_running_stats(self):
        self._sync()
        _lib.call("clbn_layer_reset_running_stats", self._handle)

    def reset_parameters(self):
        self._sync()
        _lib.call("clbn_layer_reset_parameters", self._handle)

    # -- state -----------------------------------------------------------
    def _read(self, which):
        self._sync()
        host = np.empty(self.num_features, self.param_dtype)
        _lib.call("clbn_layer_read", self._handle, which, host.ctypes.data, self.num_features)
        return host

    def state_dict(self, prefix=""):
        """PyTorch's state_dict keys, numpy values (num_batches_tracked an int64
        0-d array); ``torch.from_numpy`` each value for a torch module."""
        sd = collections.OrderedDict()
        if self.affine:
            sd[prefix + "weight"] = self._read(_lib.WEIGHT)
            sd[prefix + "bias"] = self._read(_lib.BIAS)
        if self.track_running_stats:
            sd[prefix + "running_mean"] = self._read(_lib.RUNNING_MEAN)
            sd[prefix + "running_var"] = self._read(_lib.RUNNING_VAR)
            sd[prefix + "num_batches_tracked"] = np.array(self.num_batches_tracked, np.int64)
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Loads PyTorch's keys from numpy arrays, torch tensors or anything
        np.asarray accepts. strict=True (default) requires exactly this
        layer's keys; otherwise missing keys keep their values and unexpected
        ones are ignored. Returns (missing_keys, unexpected_keys)."""
        expect = []
        if self.affine:
            expect += ["weight", "bias"]
        if self.track_running_stats:
            expect += ["running_mean", "running_var", "num_batches_tracked"]
        given = {k: v for k, v in state_dict.items()}
        missing = [k for k in expect if k not in given]
        unexpected = [k for k in given if k not in expect]
        if strict and (missing or unexpected):
            raise RuntimeError("Error(s) in loading state_dict for %s: missing keys %s, "
                               "unexpected keys %s" % (type(self).__name__, missing, unexpected))
        current = self.state_dict()
        tensors = {}
        for k in expect:
            v = given.get(k, current[k])
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            v = np.asarray(v)
            if k == "num_batches_tracked":
                if v.size != 1:
                    raise ValueError("num_batches_tracked must be a scalar")
                tensors[k] = np.asarray(v.reshape(()), np.int64)
            else:
                if v.shape != (self.num_features,):
                    raise ValueError("%s must have shape (%d,), got %s"
                                     % (k, self.num_features, v.shape))
                tensors[k] = np.ascontiguousarray(v, self.param_dtype)
        # clbn has no setter for num_batches_tracked: the state goes through
        # the C safetensors loader, which checks it and writes it atomically.
        fd, path = tempfile.mkstemp(suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(safetensors_bytes(tensors))
            self.load_safetensors(path)
        finally:
            os.unlink(path)
        return missing, unexpected

    def save_safetensors(self, path, prefix=""):
        """clbn_layer_save_safetensors: PyTorch's keys (with prefix), loadable
        with safetensors.torch.load_file."""
        self._sync()
        _lib.call("clbn_layer_save_safetensors", self._handle, os.fsencode(path),
                  prefix.encode() if prefix else None)

    def load_safetensors(self, path, prefix=""):
        """clbn_layer_load_safetensors: loads `prefix` + PyTorch's keys."""
        self._sync()
        _lib.call("clbn_layer_load_safetensors", self._handle, os.fsencode(path),
                  prefix.encode() if prefix else None)

    def save(self, path):
        """clbn's own checksummed layer state (clbn_layer_save)."""
        self._sync()
        _lib.call("clbn_layer_save", self._handle, os.fsencode(path))

    def load(self, path):
        self._sync()
        _lib.call("clbn_layer_load", self._handle, os.fsencode(path))

    # -- folding ---------------------------------------------------------
    def fold_into_conv(self, conv_weight, conv_bias=None, *, layout="oihw", inplace=False,
                       queue=None, wait_for=None):
        """Folds this (eval-mode) batch norm into the convolution or linear
        layer before it: returns (folded_weight, folded_bias) pyopencl arrays
        (torch.nn.utils.fuse_conv_bn_eval). With inplace=True conv_weight (and
        conv_bias when given) are overwritten."""
        c = self.num_features
        wdesc = conv_weight_desc(conv_weight, c, layout,
                                 self.dtype if self._code == _lib.BFLOAT16 else None)
        q = queue or conv_weight.queue or self.queue
        if inplace:
            fw = None
            fb = vector(q, c, conv_weight.dtype) if conv_bias is None else None
        else:
            fw = empty_like(conv_weight, q)
            fb = vector(q, c, conv_weight.dtype)
        run("clbn_layer_fold_into_conv", self._handle, q.int_ptr, wdesc, mem(conv_weight),
            mem(conv_bias), mem(fw), mem(fb), wait_for=wait_for,
            inputs=[conv_weight, conv_bias] + self._arrays(),
            outputs=[fw if fw is not None else conv_weight,
                     fb if fb is not None else conv_bias])
        return (fw if fw is not None else conv_weight), (fb if fb is not None else conv_bias)

    def extra_repr(self):
        text = "%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s" % (
            self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)
        if self.renorm:
            text += ", renorm=True, renorm_rmax=%s, renorm_dmax=%s" % self._renorm_clip
        if self.skip_nonfinite_update:
            text += ", skip_nonfinite_update=True"
        if self.virtual_batch_size:
            text += ", virtual_batch_size=%d" % self.virtual_batch_size
        return text

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, self.extra_repr())

    def release(self):
        """Releases the C layer now."""
        self._finalizer()


_MODES = {"exact": _lib.POPULATION_EXACT, "batch_average": _lib.POPULATION_BATCH_AVERAGE}


def population_mode(mode):
    try:
        return _MODES[mode.lower().replace("-", "_").replace(" ", "_")]
    except (KeyError, AttributeError):
        raise ValueError("mode must be 'exact' or 'batch_average', got %r" % (mode,))


def update_bn(batches, modules, mode="batch_average", *, queue=None):
    """Recomputes the running statistics of clbn batch-norm modules from data,
    in the spirit of torch.optim.swa_utils.update_bn (and detectron2's
    PreciseBN): each module's running_mean and running_var become the
    population statistics of its inputs over `batches`, num_batches_tracked
    the number of batches; mode, parameters and everything else are kept.

    ``modules``: one module (then each item of ``batches`` is its input, a
    pyopencl array) or a sequence of modules (then each item is a sequence
    with one input per module, e.g. the inputs the network's batch-norm
    layers saw in one forward pass; None skips a module for that batch).
    ``mode``: "batch_average" (default; the average of the batch means and of
    the unbiased batch variances, what update_bn computes with momentum=None)
    or "exact" (the mean and unbiased variance of every value seen, including
    the spread between batch means). Returns the number of batches."""
    single = isinstance(modules, _BatchNorm)
    mods = [modules] if single else list(modules)
    code = population_mode(mode)
    for m in mods:
        m.population_begin()
    count = 0
    for batch in batches:
        xs = [batch] if single else list(batch)
        if len(xs) != len(mods):
            raise ValueError("batch %d has %d inputs for %d modules" % (count, len(xs), len(mods)))
        for m, x in zip(mods, xs):
            if x is not None:
                m.population_accumulate(x, queue=queue)
        count += 1
    for m in mods:
        m.population_commit(mode)
    return count


def _release_layer(lib, handle, context):
    lib.clbn_layer_release(handle)


class BatchNorm1d(_BatchNorm):
    """nn.BatchNorm1d: input (N, C) or (N, C, L)."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """nn.BatchNorm2d over clbn_layer: input (N, C, H, W).

    ``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, *, dtype=np.float32, channels_last=False,
    fused=None, renorm=False, renorm_rmax=1.0, renorm_dmax=0.0,
    skip_nonfinite_update=False, virtual_batch_size=None, context=None,
    queue=None)``. momentum=None is PyTorch's cumulative average. The
    variants (docs/variants.md, Keras's names): ``renorm`` batch
    renormalization with clips rmax/dmax (set_renorm_clip changes them);
    ``skip_nonfinite_update`` keeps a channel's running statistics when its
    batch statistics are not finite (counted in skipped_updates);
    ``virtual_batch_size`` ghost batch norm. population_begin/accumulate/
    commit and clbn.update_bn recompute the running statistics from data. dtype is the activations' type (float32, float16,
    float64 or clbn.bfloat16); the parameters are float32 (float64 for
    float64). ``weight``, ``bias``, ``running_mean``, ``running_var`` are
    pyopencl arrays on the layer's own buffers (writes to them change the
    layer); ``weight.grad`` and ``bias.grad`` accumulate the gradients."""
    _ndims = (4,)


class BatchNorm3d(_BatchNorm):
    """nn.BatchNorm3d: input (N, C, D, H, W)."""
    _ndims = (5,)


_ST_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
             np.dtype(np.int64): "I64", np.dtype(np.float16): "F16"}


def safetensors_bytes(tensors):
    """A safetensors file's bytes for a dict of numpy arrays (data in the
    reference writer's order: widest dtype first, then by name)."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].dtype.itemsize, kv[0]))
    header, off, blobs = {}, 0, []
    for name, a in items:
        a = np.array(a, order="C", copy=False)  # (ascontiguousarray makes 0-d 1-d)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPE[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)
