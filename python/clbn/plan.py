"""Execution plans (clbn_plan): an operation described once, executed many times."""

import ctypes
import weakref

from . import _lib, _plan_abi
from .context import get_context, run, mem

__all__ = ["Plan", "plans_available", "FORWARD_TRAINING", "FORWARD_INFERENCE", "BACKWARD",
           "BACKWARD_INFERENCE"]

FORWARD_TRAINING = _lib.OP_FORWARD_TRAINING
FORWARD_INFERENCE = _lib.OP_FORWARD_INFERENCE
BACKWARD = _lib.OP_BACKWARD
BACKWARD_INFERENCE = _lib.OP_BACKWARD_INFERENCE

_OPS = {"forward_training": FORWARD_TRAINING, "forward_inference": FORWARD_INFERENCE,
        "backward": BACKWARD, "backward_inference": BACKWARD_INFERENCE}
_FUSED = {None: _lib.FUSED_NONE, "none": _lib.FUSED_NONE, "relu": _lib.FUSED_RELU,
          "add_relu": _lib.FUSED_ADD_RELU}
_UPDATE = {"pytorch": _lib.RUNNING_UPDATE_PYTORCH, "onnx": _lib.RUNNING_UPDATE_ONNX}


def plans_available():
    """True when the loaded libclbn has the plan API (clbn_plan_create ...)."""
    return _plan_abi.available()


def fused_code(fused):
    if isinstance(fused, int) and not isinstance(fused, bool):
        return fused
    try:
        return _FUSED[fused.lower() if isinstance(fused, str) else fused]
    except (KeyError, AttributeError):
        raise ValueError("fused must be None, 'relu' or 'add_relu', got %r" % (fused,))


def update_code(update):
    if isinstance(update, int) and not isinstance(update, bool):
        return update
    try:
        return _UPDATE[update.lower()]
    except (KeyError, AttributeError):
        raise ValueError("running_update must be 'pytorch' or 'onnx', got %r" % (update,))


_VECTORS = ("weight", "bias", "running_mean", "running_var", "save_mean", "save_invstd",
            "dweight", "dbias")


def _view_strides(v, desc, name):
    """Element strides of a view given as a pyopencl array or a 3-tuple."""
    import pyopencl.array as cla
    from .context import array_view
    if isinstance(v, cla.Array):
        return array_view(v, name, desc.layout == _lib.LAYOUT_NHWC)[0]
    v = tuple(int(e) for e in v)
    if len(v) != 3 or min(v) < 0:
        raise ValueError("the view of %s must be a pyopencl array or 3 non-negative element "
                         "strides (n, c, s), got %r" % (name, v))
    return v


class Plan:
    """A clbn_plan for one operation on one tensor description.

    ``Plan(op, tensor_desc, context=None, eps=1e-5, fused=None,
    running_update="pytorch", *, dtype=None, channels_last=None, views=None,
    renorm=False, skip_nonfinite_update=False, virtual_batch_size=None)``:
    op is one of "forward_training", "forward_inference", "backward",
    "backward_inference" (or the clbn_op value); tensor_desc a pyopencl array
    shaped and laid out like the tensors the plan will take (``dtype=``/
    ``channels_last=`` as for clbn.functional), or a clbn._lib.TensorDesc (see
    clbn.context.describe). An array with an offset or non-dense strides (a
    slice such as ``a[:, 64:128]``, a transpose) is a view: its strides become
    the view of every tensor argument (clbn_tensor_view), unless ``views``
    names another for a tensor (``{"y": array_or_element_strides}``, keys x,
    y, z, dy, dx, dz). The variant options are clbn_op_desc's (see
    docs/variants.md): ``renorm`` (batch renormalization, training forward and
    backward), ``skip_nonfinite_update`` (running statistics that survive a
    bad batch), ``virtual_batch_size`` (ghost batch norm: V dividing N).
    Unknown keywords raise TypeError; options this libclbn does not know
    raise NotImplementedError.

    ``execute(queue=None, wait_for=None, momentum=0.0, renorm_rmax=1.0,
    renorm_dmax=0.0, **buffers)`` enqueues it with the named clbn_args
    buffers (x, y, z, weight, bias, running_mean, running_var, save_mean,
    save_invstd, dy, dx, dz, dweight, dbias, save_renorm, skipped_updates:
    pyopencl arrays or buffers, absent meaning NULL) and returns a
    pyopencl.Event. An array's offset becomes the argument's element offset
    (clbn_args' x_offset ...); a tensor array's strides must be the plan's
    view of that tensor (ValueError otherwise)."""

    def __init__(self, op, tensor_desc, context=None, eps=1e-5, fused=None,
                 running_update="pytorch", *, dtype=None, channels_last=None, views=None,
                 renorm=False, skip_nonfinite_update=False, virtual_batch_size=None):
        lib = _lib.load()
        if not plans_available():
            raise NotImplementedError("this libclbn has no execution plans (clbn_plan_create)")
        default_view = None
        if not isinstance(tensor_desc, _lib.TensorDesc):
            from .context import describe_view, is_dense
            if context is None:
                context = tensor_desc
            tensor_desc, strides, _ = describe_view(tensor_desc, dtype, channels_last)
            if not is_dense(strides, tensor_desc):
                default_view = strides
        self.context = get_context(context)
        self.op = _OPS[op] if isinstance(op, str) else int(op)
        self.tensor = _lib.TensorDesc(tensor_desc.dtype, tensor_desc.layout, tensor_desc.n,
                                      tensor_desc.c, tensor_desc.spatial)
        desc = _plan_abi.OpDesc()
        _lib.check(lib.clbn_op_desc_init(ctypes.byref(desc), self.op, ctypes.byref(self.tensor)),
                   "clbn_op_desc_init")
        desc.epsilon = float(eps)
        desc.fused_op = fused_code(fused)
        desc.running_update = update_code(running_update)
        from .context import dense_strides
        dense = dense_strides(self.tensor)
        views = dict(views or {})
        for name in views:
            if name not in _plan_abi.VIEW_NAMES:
                raise TypeError("unknown view %r (x, y, z, dy, dx, dz)" % (name,))
        self.views = {}
        for name in _plan_abi.VIEW_NAMES:
            v = views.get(name, default_view)
            strides = dense if v is None else _view_strides(v, self.tensor, name)
            self.views[name] = strides
            if v is not None:
                setattr(desc, name + "_view", _plan_abi.TensorView(*strides))
        options = {"renorm": int(bool(renorm)),
                   "skip_nonfinite_update": int(bool(skip_nonfinite_update)),
                   "virtual_batch_size": int(virtual_batch_size or 0)}
        for field, value in options.items():
            if value:
                if not _plan_abi.knows(field):
                    raise NotImplementedError("this libclbn's clbn_op_desc has no %s" % field)
                setattr(desc, field, value)
        self.renorm = bool(renorm)
        self.skip_nonfinite_update = bool(skip_nonfinite_update)
        self.virtual_batch_size = options["virtual_batch_size"] or None
        self.desc = desc
        handle = ctypes.c_void_p()
        _lib.check(lib.clbn_plan_create(self.context.handle, ctypes.byref(desc),
                                        ctypes.byref(handle)), "clbn_plan_create")
        self._handle = handle.value
        # The plan refers to the context: keep it alive as long as the plan.
        self._finalizer = weakref.finalize(self, _release_plan, lib, self._handle, self.context)

    def execute(self, queue=None, wait_for=None, momentum=0.0, renorm_rmax=1.0,
                renorm_dmax=0.0, **buffers):
        import pyopencl.array as cla
        from .context import array_view, element_offset, same_view
        args = _plan_abi.Args()
        inputs, outputs = [], []
        nhwc = self.tensor.layout == _lib.LAYOUT_NHWC
        for name, value in buffers.items():
            if name not in _plan_abi.ARG_NAMES:
                raise TypeError("unknown plan argument %r" % name)
            if value is None:
                continue
            if isinstance(value, cla.Array) and name in _plan_abi.VIEW_NAMES:
                strides, off = array_view(value, name, nhwc)
                if not same_view(strides, self.views[name], self.tensor):
                    raise ValueError("%s's element strides %s are not the plan's view of %s %s: "
                                     "make a plan with views={%r: ...}"
                                     % (name, strides, name, self.views[name], name))
                setattr(args, name, value.base_data.int_ptr)
                setattr(args, name + "_offset", off)
            elif isinstance(value, cla.Array) and name in _VECTORS:
                if value.size > 1 and not value.flags.forc:
                    raise ValueError("%s must be contiguous" % name)
                setattr(args, name, value.base_data.int_ptr)
                setattr(args, name + "_offset", element_offset(value, name))
            else:
                setattr(args, name, mem(value))
            (outputs if name in _WRITTEN[self.op] else inputs).append(value)
        args.momentum = float(momentum)
        args.renorm_rmax = float(renorm_rmax)
        args.renorm_dmax = float(renorm_dmax)
        q = queue if queue is not None else self.context.queue
        return run("clbn_plan_execute", self._handle, q.int_ptr, ctypes.byref(args),
                   wait_for=wait_for, inputs=inputs, outputs=outputs)

    def describe(self):
        """clbn_plan_describe: the plan's choices as text."""
        lib = _lib.load()
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            _lib.check(lib.clbn_plan_describe(self._handle, buf, size), "clbn_plan_describe")
            text = buf.value
            if len(text) < size - 1 or size >= 1 << 20:
                return text.decode(errors="replace")
            size *= 4

    def release(self):
        self._finalizer()


def _release_plan(lib, handle, context):
    # `context` rides along so that the clbn context outlives the plan.
    lib.clbn_plan_release(handle)


_WRITTEN = {
    FORWARD_TRAINING: {"y", "running_mean", "running_var", "save_mean", "save_invstd",
                       "save_renorm", "skipped_updates"},
    FORWARD_INFERENCE: {"y"},
    BACKWARD: {"dx", "dz", "dweight", "dbias"},
    BACKWARD_INFERENCE: {"dx", "dz", "dweight", "dbias"},
}
