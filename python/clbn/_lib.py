"""ctypes binding of libclbn: finding the library, prototypes and errors.

The library is looked up, in order, at:

1. the path in the environment variable ``CLBN_LIBRARY``;
2. ``ctypes.util.find_library("clbn")`` and the usual install directories
   (``/usr/local/lib``, ``/usr/lib``, their multiarch and ``lib64`` variants);
3. when running from a source checkout, ``build/*/libclbn.so*`` of the
   repository that holds this package (the most recently built one first).
"""

import ctypes
import ctypes.util
import glob
import os
import sys

c_size_t = ctypes.c_size_t
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_double = ctypes.c_double
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p

# OpenCL handles are opaque pointers.
cl_mem = c_void_p
cl_event = c_void_p
cl_command_queue = c_void_p
cl_context = c_void_p
cl_device_id = c_void_p
cl_uint = c_uint
status_t = c_int

# clbn_dtype
FLOAT32, FLOAT16, BFLOAT16, FLOAT64 = 0, 1, 2, 3
# clbn_layout
LAYOUT_NCHW, LAYOUT_NHWC = 0, 1
# clbn_running_update
RUNNING_UPDATE_PYTORCH, RUNNING_UPDATE_ONNX = 0, 1
# clbn_fused_op
FUSED_NONE, FUSED_RELU, FUSED_ADD_RELU = 0, 1, 2
# clbn_layer_tensor
WEIGHT, BIAS, RUNNING_MEAN, RUNNING_VAR, GRAD_WEIGHT, GRAD_BIAS = range(6)
# clbn_weight_layout
WEIGHTS_OIHW, WEIGHTS_OHWI, WEIGHTS_HWIO = 0, 1, 2
# clbn_op (execution plans)
OP_FORWARD_TRAINING, OP_FORWARD_INFERENCE, OP_BACKWARD, OP_BACKWARD_INFERENCE = 0, 1, 2, 3

MOMENTUM_CUMULATIVE = -1.0


class TensorDesc(ctypes.Structure):
    """clbn_tensor_desc."""
    _fields_ = [("dtype", c_int), ("layout", c_int),
                ("n", c_size_t), ("c", c_size_t), ("spatial", c_size_t)]


class LayerConfig(ctypes.Structure):
    """clbn_layer_config."""
    _fields_ = [("num_features", c_size_t), ("epsilon", c_double), ("momentum", c_double),
                ("affine", c_int), ("track_running_stats", c_int), ("dtype", c_int),
                # appended in C (issue 16; 0 = off): present here so that the struct
                # has the C size (clbn_layer_config_default returns it by value)
                ("skip_nonfinite_update", c_int), ("renorm", c_int),
                ("renorm_rmax", c_double), ("renorm_dmax", c_double),
                ("virtual_batch_size", c_size_t)]


class ConvWeightDesc(ctypes.Structure):
    """clbn_conv_weight_desc."""
    _fields_ = [("dtype", c_int), ("layout", c_int),
                ("out_channels", c_size_t), ("per_channel", c_size_t)]


class Error(RuntimeError):
    """A clbn call failed. ``status`` is the clbn_status value, ``name`` its
    symbolic name (e.g. ``"CLBN_ERROR_INVALID_EPSILON"``) and ``description``
    the library's clbn_status_string; ``function`` is the C function that
    returned it."""

    def __init__(self, status, function=None):
        self.status = int(status)
        self.function = function
        lib = _LIB
        if lib is not None:
            self.name = lib.clbn_status_name(self.status).decode()
            self.description = lib.clbn_status_string(self.status).decode()
        else:
            self.name = "CLBN_STATUS_%d" % self.status
            self.description = "unknown"
        where = "%s: " % function if function else ""
        super().__init__("%s%s (%s)" % (where, self.name, self.description))


class LibraryNotFound(ImportError):
    """libclbn could not be found or loaded."""


_LIB = None
_PATH = None


def _repo_root():
    # python/clbn/_lib.py -> the repository root when running from a checkout.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _candidates():
    env = os.environ.get("CLBN_LIBRARY")
    if env:
        yield env
        return
    name = ctypes.util.find_library("clbn")
    if name:
        yield name
    libdirs = ["/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64"]
    multiarch = getattr(sys.implementation, "_multiarch", None)
    if multiarch:
        libdirs[1:1] = ["/usr/local/lib/" + multiarch]
        libdirs.append("/usr/lib/" + multiarch)
    prefix = sys.prefix
    libdirs.insert(0, os.path.join(prefix, "lib"))
    for d in libdirs:
        for fn in ("libclbn.so", "libclbn.so.0", "libclbn.dylib", "clbn.dll"):
            p = os.path.join(d, fn)
            if os.path.exists(p):
                yield p
    root = _repo_root()
    if os.path.exists(os.path.join(root, "include", "clbn.h")):
        found = glob.glob(os.path.join(root, "build", "*", "libclbn.so*"))
        found += glob.glob(os.path.join(root, "build", "libclbn.so*"))
        found += glob.glob(os.path.join(root, "build", "*", "libclbn.dylib"))
        found.sort(key=lambda p: os.path.getmtime(p), reverse=True)
        for p in found:
            yield p


# Prototypes: name -> (restype, [argtypes]). Functions missing from the loaded
# library (an older or newer clbn) are skipped; has() tells which exist.
_P = ctypes.POINTER
_EV = [cl_uint, _P(cl_event), _P(cl_event)]
_PROTOS = {
    "clbn_status_string": (c_char_p, [status_t]),
    "clbn_status_name": (c_char_p, [status_t]),
    "clbn_version_number": (c_uint, []),
    "clbn_context_create": (status_t, [cl_context, cl_device_id, _P(c_void_p)]),
    "clbn_context_create_default": (status_t, [_P(c_void_p)]),
    "clbn_context_get_cl_context": (cl_context, [c_void_p]),
    "clbn_context_get_device": (cl_device_id, [c_void_p]),
    "clbn_context_get_queue": (cl_command_queue, [c_void_p]),
    "clbn_context_prepare": (status_t, [c_void_p, c_int]),
    "clbn_context_get_build_log": (c_char_p, [c_void_p]),
    "clbn_context_release": (None, [c_void_p]),
    "clbn_forward_training": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem,
                                         cl_mem, cl_mem, cl_mem, cl_mem, c_double, c_double,
                                         cl_mem, cl_mem] + _EV),
    "clbn_forward_inference": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem,
                                          cl_mem, cl_mem, cl_mem, cl_mem, c_double] + _EV),
    "clbn_backward": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem, cl_mem,
                                 cl_mem, cl_mem, cl_mem, cl_mem, cl_mem] + _EV),
    "clbn_backward_inference": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem,
                                           cl_mem, cl_mem, cl_mem, cl_mem, c_double, cl_mem,
                                           cl_mem] + _EV),
    "clbn_convert": (status_t, [c_void_p, cl_command_queue, c_int, cl_mem, c_int, cl_mem,
                                c_size_t] + _EV),
    "clbn_layer_config_default": (LayerConfig, [c_size_t]),
    "clbn_layer_create": (status_t, [c_void_p, _P(LayerConfig), _P(c_void_p)]),
    "clbn_layer_release": (None, [c_void_p]),
    "clbn_layer_set_training": (status_t, [c_void_p, c_int]),
    "clbn_layer_is_training": (c_int, [c_void_p]),
    "clbn_layer_forward": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem,
                                      cl_mem] + _EV),
    "clbn_layer_backward": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem,
                                       cl_mem] + _EV),
    "clbn_layer_read": (status_t, [c_void_p, c_int, c_void_p, c_size_t]),
    "clbn_layer_write": (status_t, [c_void_p, c_int, c_void_p, c_size_t]),
    "clbn_layer_get_buffer": (cl_mem, [c_void_p, c_int]),
    "clbn_layer_set_fused_op": (status_t, [c_void_p, c_int]),
    "clbn_layer_forward_ex": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem, cl_mem,
                                         cl_mem] + _EV),
    "clbn_layer_backward_ex": (status_t, [c_void_p, cl_command_queue, _P(TensorDesc), cl_mem,
                                          cl_mem, cl_mem, cl_mem] + _EV),
    "clbn_layer_num_batches_tracked": (ctypes.c_uint64, [c_void_p]),
    "clbn_layer_zero_grad": (status_t, [c_void_p]),
    "clbn_layer_reset_running_stats": (status_t, [c_void_p]),
    "clbn_layer_reset_parameters": (status_t, [c_void_p]),
    "clbn_layer_save": (status_t, [c_void_p, c_char_p]),
    "clbn_layer_load": (status_t, [c_void_p, c_char_p]),
    "clbn_fold_into_conv": (status_t, [c_void_p, cl_command_queue, _P(ConvWeightDesc), cl_mem,
                                       cl_mem, cl_mem, cl_mem, cl_mem, cl_mem, cl_mem, cl_mem,
                                       c_double] + _EV),
    "clbn_layer_fold_into_conv": (status_t, [c_void_p, cl_command_queue, _P(ConvWeightDesc),
                                             cl_mem, cl_mem, cl_mem, cl_mem] + _EV),
    "clbn_layer_load_safetensors": (status_t, [c_void_p, c_char_p, c_char_p]),
    "clbn_layer_save_safetensors": (status_t, [c_void_p, c_char_p, c_char_p]),
}


def _declare(lib):
    for name, (res, args) in _PROTOS.items():
        fn = getattr(lib, name, None)
        if fn is None:
            continue
        fn.restype = res
        fn.argtypes = args


def load():
    """Loads libclbn (once) and returns the ctypes.CDLL."""
    global _LIB, _PATH
    if _LIB is not None:
        return _LIB
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        if not hasattr(lib, "clbn_status_name"):
            tried.append("%s (not libclbn)" % path)
            continue
        _declare(lib)
        _LIB, _PATH = lib, path
        from . import _plan_abi  # noqa: F401  (declares the plan API when present)
        _plan_abi.declare(lib)
        return lib
    raise LibraryNotFound(
        "libclbn not found; set CLBN_LIBRARY to the path of libclbn.so, install clbn, "
        "or build it in <repo>/build/<dir>. Tried: " + ("; ".join(tried) or "nothing"))


def library_path():
    """The path libclbn was loaded from."""
    load()
    return _PATH


def has(name):
    """True when the loaded libclbn exports the C function `name`."""
    return hasattr(load(), name)


def check(status, function=None):
    if status != 0:
        raise Error(status, function)


def call(name, *args):
    """Calls clbn function `name` and raises Error on a non-zero status."""
    fn = getattr(load(), name)
    check(fn(*args), name)


def wait_list(events):
    """(count, array) for an iterable of pyopencl Events (or None)."""
    events = [e for e in (events or ()) if e is not None]
    if not events:
        return 0, None
    arr = (cl_event * len(events))(*[e.int_ptr for e in events])
    return len(events), arr
Error.__module__ = "clbn"
LibraryNotFound.__module__ = "clbn"
