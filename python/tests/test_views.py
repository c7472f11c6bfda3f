"""Views from pyopencl arrays (issue 17): arrays at an offset, channel slices,
transposes and per-channel vectors inside packed buffers passed to
clbn.functional and clbn.Plan, against the same calls on contiguous copies
(bitwise: a view is gathered into the dense kernels) and the float64 numpy
reference; bytes outside the views unchanged; what cannot be expressed refused."""

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import reference as ref


def dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


def buffer_bytes(a):
    """Every byte of a's buffer (the whole allocation)."""
    host = np.empty(a.base_data.size, np.uint8)
    cl.enqueue_copy(a.queue, host, a.base_data, wait_for=a.events)
    return host


def host_view(a):
    """A pyopencl array with any strides and offset, read to numpy."""
    flat = buffer_bytes(a).view(a.dtype)
    return np.lib.stride_tricks.as_strided(flat[a.offset // a.dtype.itemsize:], a.shape,
                                           a.strides).copy()


def at_offset(queue, host, offset):
    """An array holding `host` that starts `offset` elements into a larger
    buffer filled with a guard pattern."""
    flat = np.full(host.size + offset + 7, -777.0, host.dtype)
    flat[offset:offset + host.size] = host.ravel()
    return dev(queue, flat)[offset:offset + host.size].reshape(host.shape)


def ncs(a):
    return ref.to_ncs(a)


def test_channel_slice_of_a_concatenation(plans, queue, rng, record):
    """y = bn(cat[:, 4:9]) written into a slice of another concatenation:
    same bits as on contiguous copies, the other channels untouched."""
    clbn = plans
    n, ctot, h, w = 3, 12, 5, 6
    cat = rng.standard_normal((n, ctot, h, w)).astype(np.float32) * 2 + 1
    catd = dev(queue, cat)
    xs = catd[:, 4:9]
    assert not xs.flags.forc and xs.offset > 0
    out_big = dev(queue, np.full((n, ctot, h, w), 5.5, np.float32))
    ys = out_big[:, 2:7]
    c = 5
    wgt, bias = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.uniform(-1, 1, c).astype(
        np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    rmd, rvd = dev(queue, rm), dev(queue, rv)
    y, sm, si = clbn.functional.native_batch_norm(xs, dev(queue, wgt), dev(queue, bias), rmd,
                                                  rvd, True, 0.1, 1e-3, out=ys)
    assert y is ys
    # the same on a contiguous copy
    xc = dev(queue, cat[:, 4:9])
    rmc, rvc = dev(queue, rm), dev(queue, rv)
    yc, smc, sic = clbn.functional.native_batch_norm(xc, dev(queue, wgt), dev(queue, bias), rmc,
                                                     rvc, True, 0.1, 1e-3)
    big = out_big.get()
    np.testing.assert_array_equal(big[:, 2:7], yc.get())
    np.testing.assert_array_equal(big[:, :2], 5.5)
    np.testing.assert_array_equal(big[:, 7:], 5.5)
    np.testing.assert_array_equal(rmd.get(), rmc.get())
    np.testing.assert_array_equal(rvd.get(), rvc.get())
    np.testing.assert_array_equal(si.get(), sic.get())
    ey, _, einv, erm, erv = ref.forward_training(ncs(cat[:, 4:9]), wgt, bias, rm, rv, 0.1, 1e-3)
    np.testing.assert_allclose(ncs(big[:, 2:7]), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(rvd.get(), erv, rtol=2e-6)
    record("views slice y", np.abs(ncs(big[:, 2:7]) - ey).max())
    # backward through views: dy a slice too, dx into a slice of a guarded buffer
    dycat = rng.standard_normal((n, ctot, h, w)).astype(np.float32)
    dys = dev(queue, dycat)[:, 1:6]
    dx_big = dev(queue, np.full((n, ctot, h, w), -3.0, np.float32))
    dxs = dx_big[:, 6:11]
    dx, dw, db = clbn.functional.batch_norm_backward(dys, xs, dev(queue, wgt), save_mean=sm,
                                                     save_invstd=si, dx=dxs)
    dxc, dwc, dbc = clbn.functional.batch_norm_backward(dev(queue, dycat[:, 1:6]), xc,
                                                        dev(queue, wgt), save_mean=smc,
                                                        save_invstd=sic)
    dbig = dx_big.get()
    np.testing.assert_array_equal(dbig[:, 6:11], dxc.get())
    np.testing.assert_array_equal(dbig[:, :6], -3.0)
    np.testing.assert_array_equal(dbig[:, 11:], -3.0)
    np.testing.assert_array_equal(dw.get(), dwc.get())
    np.testing.assert_array_equal(db.get(), dbc.get())
    edx, edw, edb = ref.backward_training(ncs(cat[:, 4:9]), ncs(dycat[:, 1:6]),
                                          ref.forward_training(ncs(cat[:, 4:9]))[1], einv, wgt)
    np.testing.assert_allclose(ncs(dbig[:, 6:11]), edx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw.get(), edw, rtol=1e-4, atol=1e-4)
    record("views slice dx", np.abs(ncs(dbig[:, 6:11]) - edx).max())


@pytest.mark.parametrize("perm", [(1, 0, 2, 3), (2, 3, 1, 0), (0, 2, 3, 1)])
def test_transposed_layouts(plans, queue, rng, record, perm):
    """CNHW, HWCN and NHWC storage seen as (N, C, H, W) by a transpose: the
    same results as on a contiguous copy, and as the numpy reference."""
    clbn = plans
    shape = (4, 3, 5, 2)
    stored_shape = tuple(shape[p] for p in perm)
    stored = rng.standard_normal(stored_shape).astype(np.float32)
    inv = tuple(np.argsort(perm))
    x_host = stored.transpose(inv)
    assert x_host.shape == shape
    xd = dev(queue, stored).transpose(inv)
    rm, rv = dev(queue, np.zeros(3, np.float32)), dev(queue, np.ones(3, np.float32))
    y = clbn.functional.batch_norm(xd, rm, rv, training=True, eps=1e-2)
    # the dense copy in the layout the view is closest to (C's stride below the
    # spatial one: channels-last), which is what clbn gathers it into
    nhwc = perm.index(1) > perm.index(2)
    copy = np.moveaxis(x_host, 1, -1) if nhwc else x_host
    yc = clbn.functional.batch_norm(dev(queue, copy), dev(queue, np.zeros(3, np.float32)),
                                    dev(queue, np.ones(3, np.float32)), training=True, eps=1e-2,
                                    channels_last=nhwc)
    yh = host_view(y)
    np.testing.assert_array_equal(yh, np.moveaxis(yc.get(), -1, 1) if nhwc else yc.get())
    ey = ref.forward_training(ncs(x_host), eps=1e-2)[0]
    np.testing.assert_allclose(ncs(yh), ey, rtol=2e-5, atol=2e-5)
    record("views transposed y", np.abs(ncs(yh) - ey).max())
    # inference on the same view
    ye = clbn.functional.batch_norm(xd, rm, rv, training=False, eps=1e-2)
    ei = ref.forward_inference(ncs(x_host), rm.get(), rv.get(), eps=1e-2)
    np.testing.assert_allclose(ncs(host_view(ye)), ei, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("offset", [1, 3, 37])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_offsets_and_packed_vectors(plans, queue, rng, record, offset, dtype):
    """x and y at odd element offsets (no sub-buffer alignment needed), the
    per-channel vectors at odd offsets inside one packed parameter buffer."""
    clbn = plans
    n, c, s = 5, 4, 7
    x = (rng.standard_normal((n, c, s)) * 3 - 1).astype(dtype)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=2e-3, atol=4e-3)
    xd = at_offset(queue, x, offset)
    yd = at_offset(queue, np.zeros_like(x), offset + 2)
    wgt, bias = rng.uniform(0.5, 2, c).astype(np.float32), rng.uniform(-1, 1, c).astype(np.float32)
    rm0, rv0 = rng.uniform(-1, 1, c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    packed = np.full(1 + 4 * c + 3, 9.0, np.float32)
    o = [1, 1 + c, 2 + 2 * c, 3 + 3 * c]  # odd, unaligned positions
    for k, v in zip(o, (wgt, bias, rm0, rv0)):
        packed[k:k + c] = v
    pd = dev(queue, packed)
    wv, bv, rmv, rvv = (pd[k:k + c] for k in o)
    assert all(v.offset % 4 == 0 and v.offset > 0 for v in (wv, bv, rmv, rvv))
    y, sm, si = clbn.functional.native_batch_norm(xd, wv, bv, rmv, rvv, True, 0.25, 1e-3, out=yd)
    ey, _, _, erm, erv = ref.forward_training(x.astype(np.float64), wgt, bias, rm0, rv0, 0.25,
                                              1e-3)
    np.testing.assert_allclose(y.get(), ey, **tol)
    after = pd.get()
    np.testing.assert_allclose(after[o[2]:o[2] + c], erm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(after[o[3]:o[3] + c], erv, rtol=2e-6)
    np.testing.assert_array_equal(after[o[0]:o[0] + c], wgt)
    guard = np.ones(after.size, bool)
    for k in o:
        guard[k:k + c] = False
    np.testing.assert_array_equal(after[guard], 9.0)  # bytes between the vectors unchanged
    full = yd.base_data
    host = np.empty(full.size // x.itemsize, dtype)
    cl.enqueue_copy(queue, host, full)
    keep = np.ones(host.size, bool)
    keep[offset + 2:offset + 2 + x.size] = False
    np.testing.assert_array_equal(host[keep], -777.0)
    record("views offsets y %s" % np.dtype(dtype).name, np.abs(y.get() - ey).max())
    # eval with the packed vectors
    ye = clbn.functional.batch_norm(xd, rmv, rvv, wv, bv, training=False, eps=1e-3)
    np.testing.assert_allclose(ye.get(), ref.forward_inference(x.astype(np.float64), erm, erv,
                                                               wgt, bias, 1e-3), **tol)


def test_plan_from_a_view(plans, queue, rng):
    """clbn.Plan made from a slice: its strides are every tensor's view;
    arrays with other strides are refused; views= gives another."""
    clbn = plans
    big = rng.standard_normal((2, 8, 3, 3)).astype(np.float32)
    bd = dev(queue, big)
    xs = bd[:, 2:5]
    p = clbn.Plan("forward_training", xs, eps=1e-3)
    ybig = dev(queue, np.zeros_like(big))
    ys = ybig[:, 5:8]
    sm, si = cla.empty(queue, 3, np.float32), cla.empty(queue, 3, np.float32)
    p.execute(x=xs, y=ys, save_mean=sm, save_invstd=si).wait()
    ey = ref.forward_training(ncs(big[:, 2:5]), eps=1e-3)[0]
    np.testing.assert_allclose(ncs(ybig.get()[:, 5:8]), ey, rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match="view"):
        p.execute(x=xs, y=cla.empty(queue, (2, 3, 3, 3), np.float32), save_mean=sm,
                  save_invstd=si)
    p2 = clbn.Plan("forward_training", xs, eps=1e-3, views={"y": (27, 9, 1)})
    yd = cla.empty(queue, (2, 3, 3, 3), np.float32)
    p2.execute(x=xs, y=yd, save_mean=sm, save_invstd=si).wait()
    np.testing.assert_array_equal(yd.get(), ybig.get()[:, 5:8])
    with pytest.raises(TypeError):
        clbn.Plan("forward_training", xs, views={"w": (1, 1, 1)})


def test_views_that_cannot_be_expressed(plans, queue, rng):
    clbn = plans
    x = dev(queue, rng.standard_normal((2, 3, 4, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="negative"):
        clbn.functional.batch_norm(x[:, ::-1], None, None, training=True)
    with pytest.raises(ValueError, match="collapse"):
        clbn.functional.batch_norm(x[:, :, :, :3], None, None, training=True)
    raw = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE, 4 * 2 * 3 * 5 + 4)
    odd = cla.Array(queue, (2, 3, 5), np.float32, data=raw, offset=2)
    with pytest.raises(ValueError, match="element"):
        clbn.functional.batch_norm(odd, None, None, training=True)
    vec = dev(queue, np.ones(7, np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        clbn.functional.batch_norm(x, None, None, weight=vec[::2][:3], training=True)
    # an output view whose elements overlap: the library refuses, nothing written
    ybad = cla.Array(queue, (2, 3, 4, 6), np.float32, data=cl.Buffer(
        queue.context, cl.mem_flags.READ_WRITE, 4 * 200), strides=(4 * 24, 4 * 4, 4 * 6, 4))
    with pytest.raises(clbn.Error) as e:
        clbn.functional.batch_norm(x, None, None, training=True, out=ybad)
    assert e.value.name == "CLBN_ERROR_VIEW_OVERLAP"


@pytest.mark.parametrize("kind", ["slice", "chwn"])
def test_layer_takes_views(plans, queue, rng, record, kind):
    """BatchNorm2d on a channel slice (or a CHWN transpose) of a larger array,
    writing y and dx into slices of guarded arenas (clbn_layer_set_views):
    the same bits as a twin layer on contiguous copies, against the float64
    reference, bytes outside the views untouched; a later dense call works."""
    clbn = plans
    n, ctot, h, w, c = 4, 10, 5, 7, 4
    cat = (rng.standard_normal((n, ctot, h, w)) * 1.5 + 0.5).astype(np.float32)
    dycat = rng.standard_normal((n, ctot, h, w)).astype(np.float32)
    if kind == "slice":
        xv = dev(queue, cat)[:, 3:3 + c]
        dyv = dev(queue, dycat)[:, 5:5 + c]
        xh, dyh = cat[:, 3:3 + c], dycat[:, 5:5 + c]
    else:  # (C, H, W, N) storage seen as (N, C, H, W)
        xh, dyh = cat[:, :c], dycat[:, :c]
        xv = dev(queue, xh.transpose(1, 2, 3, 0)).transpose((3, 0, 1, 2))
        dyv = dev(queue, dyh.transpose(1, 2, 3, 0)).transpose((3, 0, 1, 2))
    yarena = dev(queue, np.full((n, ctot, h, w), 7.25, np.float32))
    dxarena = dev(queue, np.full((n, ctot, h, w), -2.5, np.float32))
    yv, dxv = yarena[:, 6:6 + c], dxarena[:, 1:1 + c]
    bn, twin = clbn.BatchNorm2d(c, eps=1e-3), clbn.BatchNorm2d(c, eps=1e-3)
    y = bn(xv, out=yv)
    assert y is yv
    dx = bn.backward(dyv, dx=dxv)
    assert dx is dxv
    yt = twin(dev(queue, xh))
    dxt = twin.backward(dev(queue, dyh))
    ya, dxa = yarena.get(), dxarena.get()
    np.testing.assert_array_equal(ya[:, 6:6 + c], yt.get())
    np.testing.assert_array_equal(dxa[:, 1:1 + c], dxt.get())
    for a, v, lo, hi in ((ya, 7.25, 6, 6 + c), (dxa, -2.5, 1, 1 + c)):
        np.testing.assert_array_equal(a[:, :lo], v)
        np.testing.assert_array_equal(a[:, hi:], v)
    for name in ("running_mean", "running_var"):
        np.testing.assert_array_equal(getattr(bn, name).get(), getattr(twin, name).get())
    np.testing.assert_array_equal(bn.weight.grad.get(), twin.weight.grad.get())
    np.testing.assert_array_equal(bn.bias.grad.get(), twin.bias.grad.get())
    ey, mean, einv, erm, erv = ref.forward_training(ncs(xh), np.ones(c), np.zeros(c),
                                                    np.zeros(c), np.ones(c), 0.1, 1e-3)
    np.testing.assert_allclose(ncs(ya[:, 6:6 + c]), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(bn.running_var.get(), erv, rtol=2e-6)
    edx, edw, edb = ref.backward_training(ncs(xh), ncs(dyh), mean, einv, np.ones(c))
    np.testing.assert_allclose(ncs(dxa[:, 1:1 + c]), edx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.weight.grad.get(), edw, rtol=1e-4, atol=1e-4)
    record("layer views %s y" % kind, np.abs(ncs(ya[:, 6:6 + c]) - ey).max())
    record("layer views %s dx" % kind, np.abs(ncs(dxa[:, 1:1 + c]) - edx).max())
    # dense again: the layer's views are reset, its results the twin's
    xd = dev(queue, xh)
    np.testing.assert_array_equal(bn(xd).get(), twin(xd).get())
