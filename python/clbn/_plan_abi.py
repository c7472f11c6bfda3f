"""ctypes mirror of the execution-plan API (clbn_op_desc, clbn_args, clbn_plan_*).

The structs are declared as the header lays them out, followed by a zeroed
reserve: the C side appends options to clbn_op_desc and clbn_args over time
(zero meaning "off"), so a library newer than this binding may read or, in
clbn_op_desc_init, write more bytes than the fields below. The reserve keeps
those accesses inside memory Python owns, and zero there keeps the new options
off. When the library reports the struct size (clbn_op_desc_size), the reserve
is checked against it.
"""

import ctypes

from . import _lib

_RESERVE = 512


class TensorView(ctypes.Structure):
    """clbn_tensor_view: strides in elements; all zero = dense in the layout."""
    _fields_ = [("stride_n", ctypes.c_size_t), ("stride_c", ctypes.c_size_t),
                ("stride_s", ctypes.c_size_t)]


VIEW_NAMES = ("x", "y", "z", "dy", "dx", "dz")

_S = ctypes.c_size_t


class LayerViews(ctypes.Structure):
    """clbn_layer_views (clbn_layer_set_views): the six tensors' views, then
    their element offsets; all zero = dense at offset 0."""
    _fields_ = ([(n, TensorView) for n in VIEW_NAMES]
                + [(n + "_offset", ctypes.c_size_t) for n in VIEW_NAMES])


class OpDescFields(ctypes.Structure):
    _fields_ = ([("op", ctypes.c_int), ("tensor", _lib.TensorDesc), ("epsilon", ctypes.c_double),
                 ("fused_op", ctypes.c_int), ("running_update", ctypes.c_int)]
                # tensor views (issue 17)
                + [(n + "_view", TensorView) for n in VIEW_NAMES]
                # batch-norm variants (issue 16), 0 = off
                + [("skip_nonfinite_update", ctypes.c_int), ("renorm", ctypes.c_int),
                   ("virtual_batch_size", _S)])


class OpDesc(ctypes.Structure):
    """clbn_op_desc followed by a zeroed reserve (see the module's docstring)."""
    _fields_ = OpDescFields._fields_ + [("_reserve", ctypes.c_ubyte * _RESERVE)]


_M = _lib.cl_mem


OFFSET_NAMES = ("x", "y", "z", "dy", "dx", "dz", "weight", "bias", "running_mean",
                "running_var", "save_mean", "save_invstd", "dweight", "dbias")


class ArgsFields(ctypes.Structure):
    _fields_ = ([(n, _M) for n in ("x", "y", "z", "weight", "bias", "running_mean",
                                   "running_var", "save_mean", "save_invstd", "dy", "dx", "dz",
                                   "dweight", "dbias")]
                + [("momentum", ctypes.c_double)]
                # element offsets (issue 17): tensors in elements, vectors in values
                + [(n + "_offset", _S) for n in OFFSET_NAMES]
                # batch-norm variants (issue 16)
                + [("renorm_rmax", ctypes.c_double), ("renorm_dmax", ctypes.c_double),
                   ("save_renorm", _M), ("skipped_updates", _M)])


class Args(ctypes.Structure):
    """clbn_args followed by a zeroed reserve."""
    _fields_ = ArgsFields._fields_ + [("_reserve", ctypes.c_ubyte * _RESERVE)]


ARG_NAMES = [f[0] for f in ArgsFields._fields_
             if f[0] not in ("momentum", "renorm_rmax", "renorm_dmax")
             and not f[0].endswith("_offset")]
TENSOR_NAMES = VIEW_NAMES

_P = ctypes.POINTER
_PROTOS = {
    "clbn_op_desc_init": (_lib.status_t, [_P(OpDesc), ctypes.c_int, _P(_lib.TensorDesc)]),
    "clbn_plan_create": (_lib.status_t, [ctypes.c_void_p, _P(OpDesc), _P(ctypes.c_void_p)]),
    "clbn_plan_release": (None, [ctypes.c_void_p]),
    "clbn_plan_execute": (_lib.status_t, [ctypes.c_void_p, _lib.cl_command_queue, _P(Args),
                                          _lib.cl_uint, _P(_lib.cl_event), _P(_lib.cl_event)]),
    "clbn_plan_describe": (_lib.status_t, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
    "clbn_layer_set_views": (_lib.status_t, [ctypes.c_void_p, ctypes.c_void_p]),
    "clbn_op_desc_size": (ctypes.c_size_t, []),
    "clbn_args_size": (ctypes.c_size_t, []),
}


def declare(lib):
    for name, (res, args) in _PROTOS.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = res
            fn.argtypes = args
    for fn, struct in (("clbn_op_desc_size", OpDesc), ("clbn_args_size", Args)):
        if hasattr(lib, fn):
            size = getattr(lib, fn)()
            if size > ctypes.sizeof(struct):
                raise _lib.LibraryNotFound(
                    "libclbn's %s (%d bytes) outgrew this binding's reserve (%d bytes): "
                    "update the clbn Python package" % (struct.__name__, size,
                                                        ctypes.sizeof(struct)))


_DESC_SIZE = None


def op_desc_size():
    """sizeof(clbn_op_desc) in the loaded library, measured: clbn_op_desc_init
    zeroes the whole struct it knows (memset of its size) before filling it,
    so the first byte of a 0xff-filled reserve it leaves alone is the end.
    Options past that end are unknown to the library (set, they would be
    ignored), so Plan refuses them."""
    global _DESC_SIZE
    if _DESC_SIZE is None:
        lib = _lib.load()
        d = OpDesc()
        ctypes.memset(ctypes.byref(d), 0xFF, ctypes.sizeof(d))
        t = _lib.TensorDesc(0, 0, 1, 1, 2)
        _lib.check(lib.clbn_op_desc_init(ctypes.byref(d), 0, ctypes.byref(t)),
                   "clbn_op_desc_init")
        raw = ctypes.string_at(ctypes.byref(d), ctypes.sizeof(d))
        end = len(raw)
        while end > 0 and raw[end - 1] == 0xFF:
            end -= 1
        # the last field the library knows may end in 0xff bytes only if it
        # was set so; every field is zeroed or small, so round up to 8.
        _DESC_SIZE = (end + 7) // 8 * 8
    return _DESC_SIZE


def knows(field):
    """Whether the loaded library's clbn_op_desc has `field`."""
    f = getattr(OpDescFields, field)
    return f.offset + f.size <= op_desc_size()


def available():
    lib = _lib.load()
    return all(hasattr(lib, n) for n in ("clbn_op_desc_init", "clbn_plan_create",
                                        "clbn_plan_execute", "clbn_plan_release"))
