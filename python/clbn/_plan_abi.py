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


class OpDescFields(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int), ("tensor", _lib.TensorDesc), ("epsilon", ctypes.c_double),
                ("fused_op", ctypes.c_int), ("running_update", ctypes.c_int)]


class OpDesc(ctypes.Structure):
    """clbn_op_desc followed by a zeroed reserve (see the module's docstring)."""
    _fields_ = OpDescFields._fields_ + [("_reserve", ctypes.c_ubyte * _RESERVE)]


_M = _lib.cl_mem


class ArgsFields(ctypes.Structure):
    _fields_ = [(n, _M) for n in ("x", "y", "z", "weight", "bias", "running_mean", "running_var",
                                  "save_mean", "save_invstd", "dy", "dx", "dz", "dweight",
                                  "dbias")] + [("momentum", ctypes.c_double)]


class Args(ctypes.Structure):
    """clbn_args followed by a zeroed reserve."""
    _fields_ = ArgsFields._fields_ + [("_reserve", ctypes.c_ubyte * _RESERVE)]


ARG_NAMES = [f[0] for f in ArgsFields._fields_ if f[0] != "momentum"]

_P = ctypes.POINTER
_PROTOS = {
    "clbn_op_desc_init": (_lib.status_t, [_P(OpDesc), ctypes.c_int, _P(_lib.TensorDesc)]),
    "clbn_plan_create": (_lib.status_t, [ctypes.c_void_p, _P(OpDesc), _P(ctypes.c_void_p)]),
    "clbn_plan_release": (None, [ctypes.c_void_p]),
    "clbn_plan_execute": (_lib.status_t, [ctypes.c_void_p, _lib.cl_command_queue, _P(Args),
                                          _lib.cl_uint, _P(_lib.cl_event), _P(_lib.cl_event)]),
    "clbn_plan_describe": (_lib.status_t, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
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


def available():
    lib = _lib.load()
    return all(hasattr(lib, n) for n in ("clbn_op_desc_init", "clbn_plan_create",
                                        "clbn_plan_execute", "clbn_plan_release"))
