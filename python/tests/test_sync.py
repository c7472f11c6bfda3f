"""SyncBatchNorm with participants as threads of one process (LocalGroup),
against the float64 reference of the whole batch."""

import threading

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import reference as ref


def run_participants(clbn, ctx, parts, dys, steps=2):
    group = clbn.LocalGroup(len(parts))
    results = [None] * len(parts)
    errors = []

    def participant(rank):
        try:
            q = cl.CommandQueue(ctx.cl_context, ctx.device)
            bn = clbn.SyncBatchNorm(parts[0][0].shape[1], eps=1e-3,
                                    process_group=group.member(rank), queue=q)
            ys, dxs = [], []
            for s in range(steps):
                y = bn(cla.to_device(q, parts[rank][s]))
                dx = bn.backward(cla.to_device(q, dys[rank][s]))
                ys.append(y.get())
                dxs.append(dx.get())
            results[rank] = (ys, dxs, bn.state_dict(), bn.weight.grad.get(), bn.bias.grad.get())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
            group._barrier.abort()

    threads = [threading.Thread(target=participant, args=(r,)) for r in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_sync_two_participants(clbn, ctx, rng, record):
    c, steps = 3, 2
    sizes = [3, 5]  # unequal parts
    parts = [[(rng.standard_normal((n, c, 4)) * 2 + 1).astype(np.float32) for _ in range(steps)]
             for n in sizes]
    dys = [[rng.standard_normal((n, c, 4)).astype(np.float32) for _ in range(steps)]
           for n in sizes]
    res = run_participants(clbn, ctx, parts, dys, steps)
    rm, rv = np.zeros(c), np.ones(c)
    gw, gb = np.zeros(c), np.zeros(c)
    for s in range(steps):
        x = np.concatenate([p[s] for p in parts]).astype(np.float64)
        dy = np.concatenate([d[s] for d in dys]).astype(np.float64)
        y, mean, inv, rm, rv = ref.forward_training(x, None, None, rm, rv, 0.1, 1e-3)
        dx, dw, db = ref.backward_training(x, dy, mean, inv)
        gw += dw
        gb += db
        got_y = np.concatenate([r[0][s] for r in res])
        got_dx = np.concatenate([r[1][s] for r in res])
        np.testing.assert_allclose(got_y, y, rtol=3e-5, atol=3e-5)
        np.testing.assert_allclose(got_dx, dx, rtol=1e-4, atol=1e-4)
        record("sync f32 y vs numpy (whole batch)", ref.maxdiff(got_y, y))
    for r in res:
        np.testing.assert_allclose(r[2]["running_mean"], rm, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(r[2]["running_var"], rv, rtol=2e-5)
        assert r[2]["num_batches_tracked"] == steps
    # each participant's gradients are its part; their sum is the whole batch's
    np.testing.assert_allclose(sum(r[3] for r in res), gw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sum(r[4] for r in res), gb, rtol=1e-4, atol=1e-4)


def test_sync_group_of_one_and_transport_error(clbn, queue, rng):
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    bn = clbn.SyncBatchNorm(2, queue=queue)
    y = bn(cla.to_device(queue, x))
    e, _, _, _, _ = ref.forward_training(x.astype(np.float64))
    np.testing.assert_allclose(y.get(), e, rtol=3e-5, atol=3e-5)

    class Broken:
        size = 1

        def allgather(self, data):
            raise OSError("network down")

    bad = clbn.SyncBatchNorm(2, process_group=Broken(), queue=queue)
    with pytest.raises(clbn.Error) as err:
        bad(cla.to_device(queue, x))
    assert err.value.name == "CLBN_ERROR_SYNC_TRANSPORT"
    assert isinstance(err.value.__cause__, OSError)
