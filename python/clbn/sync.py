"""SyncBatchNorm: one batch split across participants (threads, processes,
devices), normalized with the statistics of the whole batch.

The C library's clbn_layer_forward_sync / clbn_layer_backward_sync exchange
the statistics through a transport, the allgather of a clbn_sync_group. Here
the transport is Python:

- an mpi4py communicator (``process_group=MPI.COMM_WORLD``; mpi4py is only
  imported when given), or
- any object with ``size`` and ``allgather(data: bytes) -> bytes`` (the
  participants' data concatenated, participant 0 first), for example a
  member of ``LocalGroup``, which joins threads of one process (several
  devices driven from one process).
"""

import ctypes
import threading

from . import _lib
from .context import describe, mem, empty_like, run
from .modules import _BatchNorm

__all__ = ["SyncBatchNorm", "LocalGroup"]

ALLGATHER_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p)


class SyncGroup(ctypes.Structure):
    """clbn_sync_group."""
    _fields_ = [("size", ctypes.c_int), ("allgather", ALLGATHER_FN), ("user", ctypes.c_void_p)]


_SYNC_PROTOS = {
    "clbn_layer_forward_sync": (_lib.status_t, [ctypes.c_void_p, _lib.cl_command_queue,
                                                ctypes.POINTER(SyncGroup),
                                                ctypes.POINTER(_lib.TensorDesc), _lib.cl_mem,
                                                _lib.cl_mem] + _lib._EV),
    "clbn_layer_backward_sync": (_lib.status_t, [ctypes.c_void_p, _lib.cl_command_queue,
                                                 ctypes.POINTER(SyncGroup),
                                                 ctypes.POINTER(_lib.TensorDesc), _lib.cl_mem,
                                                 _lib.cl_mem, _lib.cl_mem] + _lib._EV),
}


def _declare():
    lib = _lib.load()
    for name, (res, args) in _SYNC_PROTOS.items():
        fn = getattr(lib, name, None)
        if fn is None:
            raise NotImplementedError("this libclbn has no %s" % name)
        fn.restype, fn.argtypes = res, args


class LocalGroup:
    """A group of `size` participants in one process (one thread each):
    ``member(rank)`` is the process_group of participant `rank`."""

    def __init__(self, size):
        self.size = int(size)
        self._barrier = threading.Barrier(self.size)
        self._slots = [None] * self.size
        self._result = None

    def member(self, rank):
        return _LocalMember(self, rank)


class _LocalMember:
    def __init__(self, group, rank):
        self.group, self.rank, self.size = group, rank, group.size

    def allgather(self, data):
        g = self.group
        g._slots[self.rank] = bytes(data)
        if g._barrier.wait() == 0:
            g._result = b"".join(g._slots)
        g._barrier.wait()
        out = g._result
        g._barrier.wait()  # everyone has read it before the next exchange
        return out


class _MPITransport:
    def __init__(self, comm):
        self.comm = comm
        self.size = comm.Get_size()

    def allgather(self, data):
        import numpy as np
        from mpi4py import MPI
        send = np.frombuffer(data, np.uint8)
        recv = np.empty(len(data) * self.size, np.uint8)
        self.comm.Allgather([send, MPI.BYTE], [recv, MPI.BYTE])
        return recv.tobytes()


class SyncBatchNorm(_BatchNorm):
    """nn.SyncBatchNorm: ``SyncBatchNorm(num_features, eps=1e-5, momentum=0.1,
    affine=True, track_running_stats=True, process_group=None, *, dtype,
    channels_last, context, queue)``. process_group: see the module's
    docstring; None is a group of one. Inputs of any rank >= 2. forward and
    backward block until the exchange is done (the normalization itself is
    enqueued). As PyTorch's, the weight and bias gradients are this
    participant's part (sum them over the participants, as the data-parallel
    allreduce does). Fused ops are not supported."""

    _ndims = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None, **kwargs):
        _declare()
        if kwargs.get("fused"):
            raise ValueError("SyncBatchNorm does not support fused ops")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, **kwargs)
        if process_group is None:
            transport = LocalGroup(1).member(0)
        elif hasattr(process_group, "Allgather") and hasattr(process_group, "Get_size"):
            transport = _MPITransport(process_group)
        else:
            transport = process_group
        self.process_group = process_group
        self._transport = transport
        self._error = None
        self._cb = ALLGATHER_FN(self._allgather)  # kept alive with the module
        self._group = SyncGroup(int(transport.size), self._cb, None)

    def _allgather(self, user, send, nbytes, recv):
        try:
            out = self._transport.allgather(ctypes.string_at(send, nbytes))
            if len(out) != nbytes * self._group.size:
                raise ValueError("allgather returned %d bytes, expected %d"
                                 % (len(out), nbytes * self._group.size))
            ctypes.memmove(recv, out, len(out))
            return 0
        except BaseException as e:  # reported as CLBN_ERROR_SYNC_TRANSPORT
            self._error = e
            return 1

    def _call(self, name, *args, **kw):
        self._error = None
        try:
            return run(name, *args, **kw)
        except _lib.Error as e:
            if self._error is not None:
                raise e from self._error
            raise

    def forward(self, x, *, out=None, queue=None, wait_for=None):
        desc = describe(x, self.dtype if self._code == _lib.BFLOAT16 else None,
                        True if self.channels_last and x.flags.c_contiguous else None)
        q = queue or x.queue or self.queue
        y = out if out is not None else empty_like(x, q)
        self._call("clbn_layer_forward_sync", self._handle, q.int_ptr, self._group, desc,
                   mem(x), mem(y), wait_for=wait_for, inputs=[x],
                   outputs=[y] + self._arrays())
        self._saved = (x, y, desc)
        return y

    __call__ = forward

    def backward(self, dy, *, x=None, dx=None, queue=None, wait_for=None):
        if self._saved is None and x is None:
            raise RuntimeError("backward() before forward()")
        x = x if x is not None else self._saved[0]
        desc = describe(x, self.dtype if self._code == _lib.BFLOAT16 else None,
                        True if self.channels_last and x.flags.c_contiguous else None)
        q = queue or dy.queue or self.queue
        dx = dx if dx is not None else empty_like(x, q)
        self._call("clbn_layer_backward_sync", self._handle, q.int_ptr, self._group, desc,
                   mem(x), mem(dy), mem(dx), wait_for=wait_for, inputs=[x, dy],
                   outputs=[dx] + self._arrays())
        return dx
