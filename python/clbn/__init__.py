"""clbn: batch normalization on any OpenCL device, from Python.

A pure-Python (ctypes) binding of libclbn that works with PyOpenCL:
tensors and per-channel vectors are ``pyopencl.array.Array``, queues are
``pyopencl.CommandQueue`` and every call records a ``pyopencl.Event`` on the
arrays it writes.

    import numpy as np, pyopencl as cl, pyopencl.array as cla, clbn
    ctx = clbn.default_context()                  # or clbn.Context(my_cl_context)
    q = ctx.queue                                 # or any pyopencl queue of that context
    x = cla.to_device(q, np.random.rand(8, 16, 32, 32).astype(np.float32))
    bn = clbn.BatchNorm2d(16, context=q)
    y = bn(x); dx = bn.backward(y)                # bn.weight.grad, bn.bias.grad
    y = clbn.functional.batch_norm(x, bn.running_mean, bn.running_var, training=False)
"""

from ._lib import Error, LibraryNotFound, library_path, load as _load

_load()

from . import functional  # noqa: E402
from .context import Context, default_context, get_context, bfloat16  # noqa: E402
from .modules import BatchNorm1d, BatchNorm2d, BatchNorm3d, update_bn  # noqa: E402
from .plan import Plan, plans_available  # noqa: E402
from .sync import SyncBatchNorm, LocalGroup  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Error", "LibraryNotFound", "Context", "default_context", "get_context", "bfloat16",
           "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "update_bn", "SyncBatchNorm", "LocalGroup", "Plan", "plans_available", "functional",
           "library_path", "version"]


def version():
    """libclbn's version as "MAJOR.MINOR.PATCH"."""
    n = _load().clbn_version_number()
    return "%d.%d.%d" % (n // 10000, n // 100 % 100, n % 100)
