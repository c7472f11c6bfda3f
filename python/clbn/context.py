"""clbn contexts as seen from PyOpenCL, and the array/event plumbing."""

import ctypes
import threading
import weakref

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import _lib

__all__ = ["Context", "default_context", "get_context", "bfloat16"]

#: Marker for bfloat16 tensors: pass ``dtype=clbn.bfloat16`` (or "bfloat16")
#: with a uint16 array that holds the upper 16 bits of float32 values.
bfloat16 = "bfloat16"

_DTYPES = {np.dtype(np.float32): _lib.FLOAT32, np.dtype(np.float16): _lib.FLOAT16,
           np.dtype(np.float64): _lib.FLOAT64}


class Context:
    """A clbn_context: one OpenCL device, its programs and scratch buffers.

    ``Context(cl_context=None, device=None)``: with a pyopencl.Context (and
    optionally one of its devices; default its first) wraps that context;
    with a pyopencl.CommandQueue takes its context and device; with nothing,
    clbn picks a device (clbn_context_create_default, honouring CLBN_DEVICE).
    ``.cl_context``, ``.device`` and ``.queue`` are pyopencl objects for the
    clbn context's own OpenCL objects (referenced, not copied)."""

    def __init__(self, cl_context=None, device=None):
        lib = _lib.load()
        self._lib = lib
        handle = ctypes.c_void_p()
        if isinstance(cl_context, cl.CommandQueue):
            device = device or cl_context.device
            cl_context = cl_context.context
        if cl_context is None and device is not None:
            cl_context = cl.Context([device])
        if cl_context is None:
            _lib.check(lib.clbn_context_create_default(ctypes.byref(handle)),
                       "clbn_context_create_default")
        else:
            device = device or cl_context.devices[0]
            _lib.check(lib.clbn_context_create(cl_context.int_ptr, device.int_ptr,
                                               ctypes.byref(handle)), "clbn_context_create")
        self._handle = handle.value
        self._finalizer = weakref.finalize(self, lib.clbn_context_release, self._handle)
        self.cl_context = cl.Context.from_int_ptr(lib.clbn_context_get_cl_context(self._handle),
                                                  retain=True)
        self.device = cl.Device.from_int_ptr(lib.clbn_context_get_device(self._handle),
                                             retain=True)
        self.queue = cl.CommandQueue.from_int_ptr(lib.clbn_context_get_queue(self._handle),
                                                  retain=True)
        _register(self)

    @property
    def handle(self):
        """The clbn_context pointer (an int)."""
        return self._handle

    def prepare(self, dtype=np.float32):
        """Compiles the kernels for `dtype` now (clbn_context_prepare)."""
        _lib.call("clbn_context_prepare", self._handle, dtype_code(dtype))

    @property
    def build_log(self):
        return self._lib.clbn_context_get_build_log(self._handle).decode(errors="replace")

    def supports(self, dtype):
        """Whether the device runs tensors of `dtype` (float64 needs cl_khr_fp64)."""
        if dtype_code(dtype) == _lib.FLOAT64:
            return "cl_khr_fp64" in self.device.extensions
        return True

    def release(self):
        """Releases the clbn context now (it is released when garbage-collected otherwise)."""
        _unregister(self)
        self._finalizer()

    def __repr__(self):
        return "<clbn.Context %s on %s>" % (hex(self._handle), self.device.name.strip())


_lock = threading.Lock()
_contexts = {}
_default = None


def _key(cl_context, device):
    return (cl_context.int_ptr, device.int_ptr)


def _register(ctx):
    with _lock:
        _contexts.setdefault(_key(ctx.cl_context, ctx.device), ctx)


def _unregister(ctx):
    with _lock:
        k = _key(ctx.cl_context, ctx.device)
        if _contexts.get(k) is ctx:
            del _contexts[k]


def default_context():
    """The process's default clbn Context (created on first use with
    clbn_context_create_default; CLBN_DEVICE selects the device)."""
    global _default
    if _default is None:
        _default = Context()
    return _default


def get_context(obj=None):
    """The clbn Context for a pyopencl CommandQueue, Context, Array or clbn
    Context (made once per (cl_context, device) and cached); None gives
    default_context()."""
    if obj is None:
        return default_context()
    if isinstance(obj, Context):
        return obj
    if isinstance(obj, cla.Array):
        obj = obj.queue if obj.queue is not None else obj.context
    if isinstance(obj, cl.CommandQueue):
        cl_ctx, dev = obj.context, obj.device
    elif isinstance(obj, cl.Context):
        cl_ctx, dev = obj, obj.devices[0]
    else:
        raise TypeError("expected a pyopencl CommandQueue, Context or Array, or a clbn.Context")
    with _lock:
        ctx = _contexts.get(_key(cl_ctx, dev))
    if ctx is None:
        ctx = Context(cl_ctx, dev)
    return ctx


def dtype_code(dtype, array=None):
    """The clbn_dtype for a numpy dtype, "bfloat16", or a torch dtype
    (torch.float32, torch.float16, torch.float64, torch.bfloat16)."""
    if type(dtype).__name__ == "dtype" and str(dtype).startswith("torch."):
        dtype = str(dtype)[len("torch."):]
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        if array is not None and array.dtype != np.uint16:
            raise TypeError("bfloat16 tensors are uint16 arrays")
        return _lib.BFLOAT16
    if isinstance(dtype, int) and not isinstance(dtype, bool) and 0 <= dtype <= 3:
        return dtype
    dt = np.dtype(dtype)
    if dt in _DTYPES:
        return _DTYPES[dt]
    if dt == np.uint16:
        raise TypeError("a uint16 array is a bfloat16 tensor only with dtype=clbn.bfloat16")
    raise TypeError("unsupported tensor dtype %s (float32, float16, float64, bfloat16)" % dt)


def param_dtype(code):
    """numpy dtype of the per-channel vectors for a clbn_dtype."""
    return np.dtype(np.float64) if code == _lib.FLOAT64 else np.dtype(np.float32)


def describe(x, dtype=None, channels_last=None):
    """(TensorDesc, layout) of array x. Shapes (N, C), (N, C, L), (N, C, H, W),
    (N, C, D, H, W). Layout: a C-contiguous array is NCHW; an array whose strides
    are channels-last (a transposed view of a contiguous (N, *spatial, C) array,
    as torch.channels_last) is NHWC. With channels_last=True the array may
    instead be a contiguous (N, *spatial, C) array."""
    shape = tuple(x.shape)
    if len(shape) < 2 or len(shape) > 5:
        raise ValueError("expected a tensor of 2 to 5 dimensions (N, C, ...), got shape %s"
                         % (shape,))
    code = dtype_code(dtype if dtype is not None else x.dtype, x)
    isz = x.dtype.itemsize
    if channels_last and x.flags.c_contiguous and len(shape) > 2:
        n, c = shape[0], shape[-1]
        spatial = int(np.prod(shape[1:-1]))
        layout = _lib.LAYOUT_NHWC
    else:
        n, c = shape[0], shape[1]
        spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        if x.flags.c_contiguous:
            layout = _lib.LAYOUT_NCHW
            if channels_last and len(shape) > 2 and spatial > 1 and c > 1:
                raise ValueError("channels_last=True needs a channels-last array")
        else:
            # channels-last strides: C fastest, then the spatial dims, then N.
            perm = (0,) + tuple(range(2, len(shape))) + (1,)
            expect, acc = [0] * len(shape), isz
            for ax in reversed(perm):
                expect[ax] = acc
                acc *= shape[ax]
            ok = all(x.strides[i] == expect[i] or shape[i] == 1 for i in range(len(shape)))
            if not ok:
                raise ValueError("the array must be contiguous NCHW or channels-last "
                                 "(strides %s)" % (x.strides,))
            layout = _lib.LAYOUT_NHWC
    if channels_last is False and layout == _lib.LAYOUT_NHWC and spatial > 1:
        raise ValueError("channels_last=False but the array is channels-last")
    return _lib.TensorDesc(code, layout, n, c, spatial)


def mem(a):
    """The cl_mem (int) of a pyopencl Array (or Buffer), or None. Arrays that
    start at an offset get a sub-buffer, kept alive with the array."""
    if a is None:
        return None
    if isinstance(a, cl.MemoryObjectHolder):
        return a.int_ptr
    if not isinstance(a, cla.Array):
        raise TypeError("expected a pyopencl.array.Array, got %s" % type(a).__name__)
    if a.offset == 0:
        return a.base_data.int_ptr
    sub = getattr(a, "_clbn_sub", None)
    if sub is None:
        sub = a.base_data.get_sub_region(a.offset, a.nbytes)
        a._clbn_sub = sub
    return sub.int_ptr


def vector_mem(v, c, pdtype, name):
    """cl_mem of a per-channel vector (C values of pdtype), checked."""
    if v is None:
        return None
    if not isinstance(v, cla.Array):
        raise TypeError("%s must be a pyopencl.array.Array" % name)
    if v.size != c or v.dtype != pdtype:
        raise ValueError("%s must hold %d values of %s (got %d of %s)"
                         % (name, c, pdtype, v.size, v.dtype))
    if not v.flags.forc:
        raise ValueError("%s must be contiguous" % name)
    return mem(v)


def empty_like(x, queue=None):
    """An uninitialized array of x's shape, dtype and strides (dense storage),
    from x's allocator (e.g. a pyopencl memory pool) when it has one."""
    queue = queue or x.queue
    nbytes = max(x.nbytes, 1)
    if x.allocator is not None:
        buf = x.allocator(nbytes)
    else:
        buf = cl.Buffer(x.context, cl.mem_flags.READ_WRITE, nbytes)
    return cla.Array(queue, x.shape, x.dtype, strides=x.strides, data=buf,
                     allocator=x.allocator)


def vector(queue, c, pdtype, fill=None):
    a = cla.empty(queue, (c,), pdtype)
    if fill is not None:
        a.fill(fill)
    return a


def events_of(*arrays):
    """The pending pyopencl events of arrays (pyopencl's event tracking)."""
    out = []
    for a in arrays:
        if isinstance(a, cla.Array):
            out.extend(a.events)
    return out


def run(name, *args, wait_for=None, inputs=(), outputs=()):
    """Calls clbn function `name` (whose last three arguments are the wait list
    and the event): waits for `wait_for` and the pending events of inputs and
    outputs, returns the call's pyopencl.Event (owned by Python) and records it
    on the outputs."""
    evs = list(wait_for or ()) + events_of(*inputs, *outputs)
    n, arr = _lib.wait_list(evs)
    ev = _lib.cl_event()
    _lib.call(name, *args, n, arr, ctypes.byref(ev))
    event = cl.Event.from_int_ptr(ev.value, retain=False)
    for o in outputs:
        if isinstance(o, cla.Array):
            o.add_event(event)
    return event


# -- views (issue 17): pyopencl arrays at offsets, with any strides ---------

def dense_strides(desc):
    """The element strides (n, c, s) of a dense tensor of `desc`."""
    c, s = desc.c, desc.spatial
    if desc.layout == _lib.LAYOUT_NHWC:
        return (s * c, 1, c)
    return (c * s, s, 1)


def element_offset(a, what):
    """a.offset in elements of a's dtype (ValueError when not a multiple)."""
    isz = a.dtype.itemsize
    if a.offset % isz:
        raise ValueError("%s starts %d bytes into its buffer, not a multiple of its "
                         "element size (%d): clbn takes element offsets" % (what, a.offset, isz))
    return a.offset // isz


def array_view(a, what="x", channels_last=None):
    """((stride_n, stride_c, stride_s), offset) in elements of an (N, C, ...)
    pyopencl array with any byte strides and offset (a slice, a transpose, an
    array at an offset), as clbn_tensor_view and clbn_args' offsets take them.
    The spatial dimensions must collapse into one (each one's stride the next
    one's times its size, as in every slice along N or C); negative strides,
    strides and offsets that are not whole elements are refused (ValueError).
    With channels_last=True a C-contiguous (N, *spatial, C) array is taken as
    channels-last, as describe() does."""
    shape, strides = tuple(a.shape), tuple(a.strides)
    isz = a.dtype.itemsize
    if channels_last and len(shape) > 2 and a.flags.c_contiguous:
        # (N, *spatial, C) dense: move C to axis 1
        shape = (shape[0], shape[-1]) + shape[1:-1]
        strides = (strides[0], strides[-1]) + strides[1:-1]
    for ax, (n, st) in enumerate(zip(shape, strides)):
        if n > 1 and (st < 0 or st % isz):
            raise ValueError("%s's stride along axis %d is %d bytes: clbn views need "
                             "non-negative strides in whole elements (%d bytes)"
                             % (what, ax, st, isz))
    el = [st // isz if n > 1 else 0 for n, st in zip(shape, strides)]
    sn = el[0]
    sc = el[1] if len(shape) > 1 else 0
    # collapse the spatial dimensions (size-1 dimensions do not matter)
    sp = [(n, e) for n, e in zip(shape[2:], el[2:]) if n > 1]
    ss = 0
    if sp:
        ss = sp[-1][1]
        for (n_outer, e_outer), (n_inner, e_inner) in zip(sp[:-1], sp[1:]):
            if e_outer != e_inner * n_inner:
                raise ValueError("%s's spatial dimensions (shape %s, strides %s bytes) do not "
                                 "collapse into one: clbn views have one spatial stride"
                                 % (what, tuple(a.shape), tuple(a.strides)))
    return (sn, sc, ss), element_offset(a, what)


def same_view(strides, other, desc):
    """Whether two element-stride triples address the same elements for
    `desc`'s shape (strides of dimensions of size 1 do not matter)."""
    dims = (desc.n, desc.c, desc.spatial)
    return all(d <= 1 or s == o for d, s, o in zip(dims, strides, other))


def is_dense(strides, desc):
    return same_view(strides, dense_strides(desc), desc)


def dense_like(x, desc, queue=None):
    """An uninitialized array of x's shape and dtype, dense in `desc`'s layout
    (NCHW: C-contiguous; NHWC: channels-last strides), from x's allocator."""
    queue = queue or x.queue
    shape = tuple(x.shape)
    isz = x.dtype.itemsize
    if desc.layout == _lib.LAYOUT_NHWC and len(shape) > 2 and shape[1] == desc.c \
            and not x.flags.c_contiguous:
        perm = (0,) + tuple(range(2, len(shape))) + (1,)
        strides, acc = [0] * len(shape), isz
        for ax in reversed(perm):
            strides[ax] = acc
            acc *= shape[ax]
        strides = tuple(strides)
    else:
        strides = None
    nbytes = max(int(np.prod(shape)) * isz, 1)
    buf = x.allocator(nbytes) if x.allocator is not None else \
        cl.Buffer(x.context, cl.mem_flags.READ_WRITE, nbytes)
    return cla.Array(queue, shape, x.dtype, strides=strides, data=buf, allocator=x.allocator)


def describe_view(x, dtype=None, channels_last=None):
    """(TensorDesc, (stride_n, stride_c, stride_s), offset) of array x with any
    strides and offset. A dense NCHW or channels-last x gets describe()'s
    description; any other x the layout its strides are closest to (NHWC
    when C's stride is below the spatial one, else NCHW) and its own view."""
    strides, offset = array_view(x, "x", channels_last)
    try:
        desc = describe(x, dtype, channels_last)
        if is_dense(strides, desc):
            return desc, strides, offset
    except ValueError:
        if x.flags.c_contiguous:
            raise
    shape = tuple(x.shape)
    if len(shape) < 2 or len(shape) > 5:
        raise ValueError("expected a tensor of 2 to 5 dimensions (N, C, ...), got shape %s"
                         % (shape,))
    code = dtype_code(dtype if dtype is not None else x.dtype, x)
    n, c = shape[0], shape[1]
    spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    nhwc = spatial > 1 and c > 1 and strides[1] < strides[2]
    desc = _lib.TensorDesc(code, _lib.LAYOUT_NHWC if nhwc else _lib.LAYOUT_NCHW, n, c, spatial)
    return desc, strides, offset
