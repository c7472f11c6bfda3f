"""Execution plans (clbn_plan_*) and the functional options that need them;
skipped when the loaded libclbn has no plan API."""

import numpy as np
import pyopencl.array as cla
import pytest

import reference as ref


def dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


def test_plan_object(plans, queue, rng):
    from clbn.context import describe
    clbn = plans
    x = rng.standard_normal((4, 3, 10)).astype(np.float32)
    xd = dev(queue, x)
    desc = describe(xd)
    p = clbn.Plan("forward_training", desc, queue, eps=1e-3)
    text = p.describe()
    assert isinstance(text, str) and text
    rm, rv = dev(queue, np.zeros(3, np.float32)), dev(queue, np.ones(3, np.float32))
    y = cla.empty_like(xd)
    sm, si = cla.empty(queue, 3, np.float32), cla.empty(queue, 3, np.float32)
    for _ in range(2):  # one plan, executed twice
        ev = p.execute(queue, momentum=0.5, x=xd, y=y, running_mean=rm, running_var=rv,
                       save_mean=sm, save_invstd=si)
    ev.wait()
    ey, mean, inv, erm, erv = ref.forward_training(x.astype(np.float64), None, None,
                                                   np.zeros(3), np.ones(3), 0.5, 1e-3)
    erm2 = 0.5 * erm + 0.5 * mean
    erv2 = 0.5 * erv + 0.5 * (erv - 0.5) * 2  # second update with the same batch
    np.testing.assert_allclose(y.get(), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(rm.get(), erm2, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(rv.get(), erv2, rtol=2e-5)
    with pytest.raises(TypeError):
        p.execute(queue, nonsense=xd)
    # from an array, inference: no compile at execution, same result as the one-call function
    pi = clbn.Plan("forward_inference", xd, eps=1e-3)
    assert pi.context is clbn.get_context(queue)
    y2 = cla.empty_like(xd)
    pi.execute(x=xd, y=y2, running_mean=rm, running_var=rv).wait()
    y3 = clbn.functional.batch_norm(xd, rm, rv, training=False, eps=1e-3)
    np.testing.assert_array_equal(y2.get(), y3.get())
    with pytest.raises(clbn.Error):
        clbn.Plan("forward_training", desc, queue, eps=-1.0)


@pytest.mark.parametrize("training", [True, False])
def test_fused_add_relu_functional(plans, queue, rng, training):
    clbn = plans
    shape = (4, 3, 5, 2)
    x = rng.standard_normal(shape).astype(np.float32)
    z = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, 3).astype(np.float32)
    rm = rng.uniform(-0.5, 0.5, 3).astype(np.float32)
    rv = rng.uniform(0.5, 2, 3).astype(np.float32)
    xd, zd, dyd = dev(queue, x), dev(queue, z), dev(queue, dy)
    wd, bd, rmd, rvd = (dev(queue, a) for a in (w, b, rm, rv))
    y, sm, si = clbn.functional.native_batch_norm(xd, wd, bd, rmd, rvd, training, 0.1, 1e-5,
                                                  fused="add_relu", z=zd)
    x3 = ref.to_ncs(x)
    if training:
        e, mean, inv, _, _ = ref.forward_training(x3, w, b, rm, rv)
    else:
        e = ref.forward_inference(x3, rm, rv, w, b)
    ey = np.maximum(e + ref.to_ncs(z), 0)
    np.testing.assert_allclose(ref.to_ncs(y.get()), ey, rtol=3e-5, atol=3e-5)
    dx, dw, db, dz = clbn.functional.batch_norm_backward(
        dyd, xd, wd, rmd, rvd, sm, si, training, 1e-5, fused="add_relu", y=y)
    g = np.where(ey > 0, ref.to_ncs(dy), 0.0)
    if training:
        edx, edw, edb = ref.backward_training(x3, g, mean, inv, w)
    else:
        edx, edw, edb = ref.backward_inference(x3, g, rm, rv, w)
    np.testing.assert_array_equal(ref.to_ncs(dz.get()), g)
    np.testing.assert_allclose(ref.to_ncs(dx.get()), edx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw.get(), edw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db.get(), edb, rtol=1e-4, atol=1e-4)


def test_onnx_running_update(plans, queue, rng):
    clbn = plans
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    rm = np.array([0.5, -0.5], np.float32)
    rv = np.array([2.0, 0.5], np.float32)
    rmd, rvd = dev(queue, rm), dev(queue, rv)
    clbn.functional.batch_norm(dev(queue, x), rmd, rvd, training=True, momentum=0.9,
                               running_update="onnx")
    x3 = x.astype(np.float64)
    mean = x3.mean(axis=(0, 2))
    var = x3.var(axis=(0, 2))  # biased, ONNX
    np.testing.assert_allclose(rmd.get(), 0.9 * rm + 0.1 * mean, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(rvd.get(), 0.9 * rv + 0.1 * var, rtol=2e-5)
