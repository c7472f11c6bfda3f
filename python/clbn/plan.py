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


class Plan:
    """A clbn_plan for one operation on one tensor description.

    ``Plan(op, tensor_desc, context=None, eps=1e-5, fused=None,
    running_update="pytorch")``: op is one of "forward_training",
    "forward_inference", "backward", "backward_inference" (or the clbn_op
    value); tensor_desc a pyopencl array shaped and laid out like the
    tensors the plan will take (``dtype=``/``channels_last=`` as for
    clbn.functional), or a clbn._lib.TensorDesc (see clbn.context.describe).
    Options the C library adds to clbn_op_desc later become keyword arguments
    here; unknown keywords raise TypeError.

    ``execute(queue=None, wait_for=None, momentum=0.0, **buffers)`` enqueues
    it with the named clbn_args buffers (x, y, z, weight, bias, running_mean,
    running_var, save_mean, save_invstd, dy, dx, dz, dweight, dbias: pyopencl
    arrays or buffers, absent meaning NULL) and returns a pyopencl.Event."""

    def __init__(self, op, tensor_desc, context=None, eps=1e-5, fused=None,
                 running_update="pytorch", *, dtype=None, channels_last=None):
        lib = _lib.load()
        if not plans_available():
            raise NotImplementedError("this libclbn has no execution plans (clbn_plan_create)")
        if not isinstance(tensor_desc, _lib.TensorDesc):
            from .context import describe
            if context is None:
                context = tensor_desc
            tensor_desc = describe(tensor_desc, dtype, channels_last)
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
        self.desc = desc
        handle = ctypes.c_void_p()
        _lib.check(lib.clbn_plan_create(self.context.handle, ctypes.byref(desc),
                                        ctypes.byref(handle)), "clbn_plan_create")
        self._handle = handle.value
        # The plan refers to the context: keep it alive as long as the plan.
        self._finalizer = weakref.finalize(self, _release_plan, lib, self._handle, self.context)

    def execute(self, queue=None, wait_for=None, momentum=0.0, **buffers):
        args = _plan_abi.Args()
        inputs, outputs = [], []
        for name, value in buffers.items():
            if name not in _plan_abi.ARG_NAMES:
                raise TypeError("unknown plan argument %r" % name)
            if value is None:
                continue
            setattr(args, name, mem(value))
            (outputs if name in _WRITTEN[self.op] else inputs).append(value)
        args.momentum = float(momentum)
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
    FORWARD_TRAINING: {"y", "running_mean", "running_var", "save_mean", "save_invstd"},
    FORWARD_INFERENCE: {"y"},
    BACKWARD: {"dx", "dz", "dweight", "dbias"},
    BACKWARD_INFERENCE: {"dx", "dz", "dweight", "dbias"},
}
