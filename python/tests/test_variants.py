"""Batch-norm variants from Python (issue 16): batch renormalization, running
statistics that survive a bad batch, population statistics (update_bn) and
virtual (ghost) batches, against float64 numpy references and torch goldens
computed here with torch ops and autograd (torch tests skipped without torch)."""

import numpy as np
import pyopencl.array as cla
import pytest

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the numpy references still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


def t64(a):
    return torch.from_numpy(np.asarray(a, np.float64))


# -- batch renormalization ---------------------------------------------------

def torch_renorm(x, w, b, rm, rv, dy, eps, rmax, dmax, momentum, unbiased_batch_var=False,
                 eps_outside=False):
    """Ioffe 2017, Algorithm 1, in torch float64 with autograd (r, d detached).
    Returns y, dx, dweight, dbias, new running_mean, new running_var, r, d."""
    x = t64(x).requires_grad_()
    w, b = t64(w).requires_grad_(), t64(b).requires_grad_()
    rm, rv = t64(rm), t64(rv)
    dims = (0, 2, 3)
    shape = (1, -1, 1, 1)
    mean = x.mean(dims)
    var = x.var(dims, unbiased=unbiased_batch_var)
    sigma_b = torch.sqrt(var) + eps if eps_outside else torch.sqrt(var + eps)
    sigma = torch.sqrt(rv) + eps if eps_outside else torch.sqrt(rv + eps)  # before the update
    r = torch.clamp(sigma_b / sigma, 1.0 / rmax, rmax).detach()
    d = torch.clamp((mean - rm) / sigma, -dmax, dmax).detach()
    xhat = (x - mean.view(shape)) / sigma_b.view(shape) * r.view(shape) + d.view(shape)
    y = w.view(shape) * xhat + b.view(shape)
    y.backward(t64(dy))
    m = x.numel() // x.shape[1]
    with torch.no_grad():
        nrm = (1 - momentum) * rm + momentum * mean
        nrv = (1 - momentum) * rv + momentum * x.var(dims, unbiased=True)
    return [t.detach().numpy() for t in (y, x.grad, w.grad, b.grad, nrm, nrv, r, d)], m


RENORM_CASES = {
    # running statistics far from the batch's: both clips active
    "clipped": dict(rmax=1.5, dmax=0.25, rm_shift=1.0, rv_scale=6.0),
    # wide clips: r = sigma_B/sigma and d unclipped
    "unclipped": dict(rmax=50.0, dmax=50.0, rm_shift=0.3, rv_scale=1.5),
}


@needs_torch
@pytest.mark.parametrize("case", sorted(RENORM_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_renorm_functional_matches_torch(plans, queue, rng, record, fp64, case, dtype):
    if dtype == np.float64 and not fp64:
        pytest.skip("no cl_khr_fp64")
    clbn = plans
    k = RENORM_CASES[case]
    n, c, h, w = 4, 5, 3, 4
    eps, momentum = 0.05, 0.2  # a large eps: misplacing it shows
    x = (rng.standard_normal((n, c, h, w)) * rng.uniform(0.5, 2, (1, c, 1, 1))
         + rng.uniform(-1, 1, (1, c, 1, 1))).astype(dtype)
    dy = rng.standard_normal((n, c, h, w)).astype(dtype)
    wgt, bias = rng.uniform(0.5, 1.5, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)
    rm = (x.mean(axis=(0, 2, 3)) + k["rm_shift"] * rng.choice([-1, 1], c)).astype(dtype)
    rv = (x.var(axis=(0, 2, 3)) * k["rv_scale"]).astype(dtype)
    (ey, edx, edw, edb, erm, erv, er, ed), m = torch_renorm(
        x, wgt, bias, rm, rv, dy, eps, k["rmax"], k["dmax"], momentum)
    if case == "clipped":  # the clips are active in this case, inactive in the other
        assert np.any(np.abs(ed) == k["dmax"]) and np.any(er == 1 / k["rmax"])
    else:
        assert np.all(np.abs(ed) < k["dmax"]) and np.all(er < k["rmax"])
        assert np.all(er > 1 / k["rmax"])
    rmd, rvd = dev(queue, rm), dev(queue, rv)
    wd = dev(queue, wgt)
    xd = dev(queue, x)
    y, sm, si, sr = clbn.functional.native_batch_norm(
        xd, wd, dev(queue, bias), rmd, rvd, True, momentum, eps, renorm=True,
        renorm_rmax=k["rmax"], renorm_dmax=k["dmax"])
    dx, dw, db = clbn.functional.batch_norm_backward(dev(queue, dy), xd, wd, save_mean=sm,
                                                     save_invstd=si, eps=eps, save_renorm=sr)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    name = "renorm %s %s" % (case, np.dtype(dtype).name)
    for what, got, want in (("y", y.get(), ey), ("dx", dx.get(), edx), ("dweight", dw.get(), edw),
                            ("dbias", db.get(), edb), ("running_mean", rmd.get(), erm),
                            ("running_var", rvd.get(), erv), ("r", sr.get()[:c], er),
                            ("d", sr.get()[c:], ed)):
        t = dict(tol)
        if what in ("dweight", "dbias") and dtype == np.float32:
            t = dict(rtol=1e-4, atol=1e-4)  # sums of n*h*w products
        np.testing.assert_allclose(got, want, err_msg=what, **t)
        record("%s %s" % (name, what), np.abs(np.asarray(got, np.float64) - want).max())
    if case == "clipped" and dtype == np.float32:
        # negative control: sigma_B from the unbiased batch variance is a
        # different result, well outside the tolerance used above (with r
        # unclipped sigma_B cancels out of y, so the control needs the clip)
        (by, *_), _ = torch_renorm(x, wgt, bias, rm, rv, dy, eps, k["rmax"], k["dmax"],
                                   momentum, unbiased_batch_var=True)
        assert np.abs(y.get() - by).max() > 50 * tol["atol"]
        # and so is epsilon outside the square roots
        (ey2, *_), _ = torch_renorm(x, wgt, bias, rm, rv, dy, eps, k["rmax"], k["dmax"],
                                    momentum, eps_outside=True)
        assert np.abs(y.get() - ey2).max() > 50 * tol["atol"]


def test_renorm_identity_clips_are_plain_batch_norm(plans, queue, rng):
    """rmax = 1, dmax = 0: bitwise plain batch norm (forward and backward)."""
    clbn = plans
    x = rng.standard_normal((3, 4, 10)).astype(np.float32)
    dy = rng.standard_normal((3, 4, 10)).astype(np.float32)
    xd, dyd = dev(queue, x), dev(queue, dy)
    wd = dev(queue, rng.uniform(0.5, 1.5, 4).astype(np.float32))
    out = []
    for renorm in (False, True):
        rmd, rvd = dev(queue, np.full(4, 0.5, np.float32)), dev(queue, np.full(4, 3.0, np.float32))
        r = clbn.functional.native_batch_norm(xd, wd, None, rmd, rvd, True, 0.1, 1e-3,
                                              renorm=renorm)
        g = clbn.functional.batch_norm_backward(dyd, xd, wd, save_mean=r[1], save_invstd=r[2],
                                                eps=1e-3, save_renorm=r[3] if renorm else None)
        out.append([a.get() for a in (r[0], rmd, rvd, r[1], r[2]) + tuple(g)])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@needs_torch
def test_renorm_module_matches_torch(clbn, queue, rng, record):
    """BatchNorm2d(renorm=True) over three steps with the clips ramped by
    set_renorm_clip; the running statistics each step are torch's."""
    c = 3
    eps, momentum = 1e-3, 0.1
    bn = clbn.BatchNorm2d(c, eps=eps, momentum=momentum, renorm=True, renorm_rmax=1.0,
                          renorm_dmax=0.0, context=queue)
    wgt = rng.uniform(0.5, 1.5, c)
    bias = rng.uniform(-1, 1, c)
    bn.load_state_dict({"weight": wgt, "bias": bias, "running_mean": np.full(c, 0.5),
                        "running_var": np.full(c, 2.0), "num_batches_tracked": 0})
    rm, rv = np.full(c, 0.5), np.full(c, 2.0)
    gw, gb = np.zeros(c), np.zeros(c)
    for step, (rmax, dmax) in enumerate([(1.0, 0.0), (1.2, 0.1), (3.0, 1.0)]):
        if step:
            bn.set_renorm_clip(rmax, dmax)
        assert bn.renorm_clip == (rmax, dmax)
        x = (rng.standard_normal((4, c, 3, 3)) * (1 + step)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        (ey, edx, edw, edb, rm, rv, _, _), _ = torch_renorm(x, wgt, bias, rm, rv, dy, eps, rmax,
                                                            dmax, momentum)
        gw, gb = gw + edw, gb + edb
        y = bn(dev(queue, x))
        dx = bn.backward(dev(queue, dy))
        np.testing.assert_allclose(y.get(), ey, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(dx.get(), edx, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(bn.running_mean.get(), rm, rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(bn.running_var.get(), rv, rtol=2e-6)
        np.testing.assert_allclose(bn.weight.grad.get(), gw, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bn.bias.grad.get(), gb, rtol=1e-4, atol=1e-4)
        record("renorm module y", np.abs(y.get() - ey).max())
    with pytest.raises(clbn.Error) as e:
        bn.set_renorm_clip(0.5, 0.0)
    assert e.value.name == "CLBN_ERROR_INVALID_OPTION"
    assert bn.renorm_clip == (3.0, 1.0)
    assert "renorm=True" in repr(bn)
    plain = clbn.BatchNorm2d(c, context=queue)
    with pytest.raises(clbn.Error):
        plain.set_renorm_clip(2.0, 1.0)


def test_renorm_invalid_clips_change_nothing(plans, queue, rng):
    clbn = plans
    x = dev(queue, rng.standard_normal((2, 3, 5)).astype(np.float32))
    rm, rv = dev(queue, np.zeros(3, np.float32)), dev(queue, np.ones(3, np.float32))
    y = dev(queue, np.full((2, 3, 5), 7.0, np.float32))
    for rmax, dmax in ((0.9, 0.0), (1.0, -0.1), (float("nan"), 0.0)):
        with pytest.raises(clbn.Error):
            clbn.functional.native_batch_norm(x, None, None, rm, rv, True, renorm=True, out=y,
                                              renorm_rmax=rmax, renorm_dmax=dmax)
    np.testing.assert_array_equal(y.get(), 7.0)
    np.testing.assert_array_equal(rm.get(), 0.0)
    np.testing.assert_array_equal(rv.get(), 1.0)


# -- running statistics that survive a bad batch ------------------------------

@needs_torch
@pytest.mark.parametrize("use_module", [False, True])
def test_skip_nonfinite_update_matches_torch_elsewhere(plans, queue, rng, use_module):
    """NaN in channel 1 and Inf in channel 3: those channels keep their
    running statistics and are counted; the others, and y, are torch's."""
    clbn = plans
    n, c, h, w = 4, 5, 3, 3
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[2, 1, 0, 1] = np.nan
    x[0, 3, 2, 2] = np.inf
    tbn = torch.nn.BatchNorm2d(c, momentum=0.3)
    with torch.no_grad():
        tbn.running_mean.copy_(torch.arange(c, dtype=torch.float32))
        tbn.running_var.copy_(torch.full((c,), 2.0))
    rm0, rv0 = tbn.running_mean.numpy().copy(), tbn.running_var.numpy().copy()
    ty = tbn(torch.from_numpy(x)).detach().numpy()
    bad = [1, 3]
    good = [0, 2, 4]
    assert np.all(np.isnan(tbn.running_mean.numpy()[bad]) | np.isinf(tbn.running_mean.numpy()[bad])
                  | np.isnan(tbn.running_var.numpy()[bad]))
    if use_module:
        bn = clbn.BatchNorm2d(c, momentum=0.3, skip_nonfinite_update=True, context=queue)
        bn.load_state_dict({"weight": np.ones(c), "bias": np.zeros(c), "running_mean": rm0,
                            "running_var": rv0, "num_batches_tracked": 0})
        y = bn(dev(queue, x))
        y2 = bn(dev(queue, x))
        rm, rv, counts = bn.running_mean.get(), bn.running_var.get(), bn.skipped_updates
        expect_counts = np.array([0, 2, 0, 2, 0], np.uint32)
    else:
        rmd, rvd = dev(queue, rm0), dev(queue, rv0)
        cnt = dev(queue, np.zeros(c, np.uint32))
        y = clbn.functional.batch_norm(dev(queue, x), rmd, rvd, training=True, momentum=0.3,
                                       skip_nonfinite_update=True, skipped_updates=cnt)
        rm, rv, counts = rmd.get(), rvd.get(), cnt.get()
        expect_counts = np.array([0, 1, 0, 1, 0], np.uint32)
    np.testing.assert_array_equal(counts, expect_counts)
    np.testing.assert_array_equal(rm[bad], rm0[bad])
    np.testing.assert_array_equal(rv[bad], rv0[bad])
    if use_module:
        # two updates with the same batch in the good channels
        trm, trv = rm0[good], rv0[good]
        for _ in range(2):
            xb = x[:, good].astype(np.float64)
            trm = 0.7 * trm + 0.3 * xb.mean(axis=(0, 2, 3))
            trv = 0.7 * trv + 0.3 * xb.var(axis=(0, 2, 3), ddof=1)
    else:
        trm, trv = tbn.running_mean.numpy()[good], tbn.running_var.numpy()[good]
    np.testing.assert_allclose(rm[good], trm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(rv[good], trv, rtol=2e-6)
    np.testing.assert_allclose(y.get(), ty, rtol=2e-5, atol=2e-5, equal_nan=True)
    assert np.all(np.isnan(y.get()[:, bad]) == np.isnan(ty[:, bad]))


def test_skip_nonfinite_update_off_by_default(clbn, queue, rng):
    """Default off: PyTorch's behaviour, the running statistics take the NaN;
    skipped_updates needs the option."""
    bn = clbn.BatchNorm2d(2, context=queue)
    x = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    bn(dev(queue, x))
    assert np.isnan(bn.running_mean.get()[0]) and np.isfinite(bn.running_mean.get()[1])
    with pytest.raises(clbn.Error):
        bn.skipped_updates


# -- population statistics -----------------------------------------------------

def batches_of(rng, sizes, c=3, hw=(4, 5)):
    return [(rng.standard_normal((n, c) + hw) * rng.uniform(0.5, 3)
             + rng.uniform(-2, 2)).astype(np.float32) for n in sizes]


@needs_torch
def test_update_bn_batch_average_matches_torch(clbn, queue, rng, record):
    """clbn.update_bn(mode="batch_average") = torch.optim.swa_utils.update_bn on
    a torch model holding one BatchNorm2d, over the same batches."""
    from torch.optim.swa_utils import update_bn as torch_update_bn
    batches = batches_of(rng, [4, 4, 2, 6, 3])
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3)).double()
    torch_update_bn([torch.from_numpy(b.astype(np.float64)) for b in batches], model)
    tbn = model[0]
    bn = clbn.BatchNorm2d(3, context=queue)
    bn.eval()
    count = clbn.update_bn([dev(queue, b) for b in batches], bn, mode="batch_average")
    assert count == len(batches)
    assert not bn.training  # the mode is kept
    np.testing.assert_allclose(bn.running_mean.get(), tbn.running_mean.numpy(), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(bn.running_var.get(), tbn.running_var.numpy(), rtol=1e-6)
    assert bn.num_batches_tracked == int(tbn.num_batches_tracked) == len(batches)
    record("update_bn batch_average running_var",
           np.abs(bn.running_var.get() - tbn.running_var.numpy()).max())


def test_update_bn_exact_matches_numpy(clbn, queue, rng, record):
    """mode="exact": the mean and unbiased variance of all the data (float64
    numpy over the concatenation), which differs from the batch average."""
    batches = batches_of(rng, [4, 2, 5, 3])
    bn = clbn.BatchNorm2d(3, context=queue)
    wgt = bn.weight.get()
    clbn.update_bn([dev(queue, b) for b in batches], bn, mode="exact")
    allx = np.concatenate([b.astype(np.float64) for b in batches])
    mean = allx.mean(axis=(0, 2, 3))
    var = allx.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean.get(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.get(), var, rtol=1e-6)
    assert bn.training and bn.num_batches_tracked == 4
    np.testing.assert_array_equal(bn.weight.get(), wgt)
    avg_var = np.mean([b.astype(np.float64).var(axis=(0, 2, 3), ddof=1) for b in batches], 0)
    assert np.abs(avg_var - var).max() > 1e-2 * var.max()  # the modes differ on this data
    record("update_bn exact running_var", np.abs(bn.running_var.get() - var).max() / var.max())
    # the accumulator stays: commit the other mode
    bn.population_commit("batch_average")
    np.testing.assert_allclose(bn.running_var.get(), avg_var, rtol=1e-6)


def test_exact_mode_accuracy_with_a_large_mean(clbn, queue, rng, record):
    """Data of mean 1e4 and std 0.1 over 300 batches: the exact mode's mean
    and variance within 1e-6 relative of float64 over the same float32 values
    (the library accumulates in compensated arithmetic)."""
    bn = clbn.BatchNorm1d(4, context=queue)
    bn.population_begin()
    acc = []
    for _ in range(300):
        b = (1e4 + 0.1 * rng.standard_normal((16, 4, 8))).astype(np.float32)
        acc.append(b.astype(np.float64))
        bn.population_accumulate(dev(queue, b))
    bn.population_commit("exact")
    allx = np.concatenate(acc)
    mean, var = allx.mean(axis=(0, 2)), allx.var(axis=(0, 2), ddof=1)
    got_m, got_v = bn.running_mean.get().astype(np.float64), bn.running_var.get().astype(np.float64)
    # the float32 running statistics hold the result rounded to float32
    np.testing.assert_allclose(got_m, mean, rtol=1e-6)
    np.testing.assert_allclose(got_v, var, rtol=1e-6)
    record("exact mode 1e4+-0.1 var rel", np.abs(got_v / var - 1).max())
    assert bn.num_batches_tracked == 300


def test_update_bn_several_modules_and_errors(clbn, queue, rng):
    a, b = clbn.BatchNorm2d(3, context=queue), clbn.BatchNorm1d(2, context=queue)
    xa = batches_of(rng, [2, 3])
    xb = [rng.standard_normal((5, 2)).astype(np.float32) for _ in range(2)]
    n = clbn.update_bn([(dev(queue, p), dev(queue, q)) for p, q in zip(xa, xb)], [a, b],
                       mode="exact")
    assert n == 2
    allb = np.concatenate(xb).astype(np.float64)
    np.testing.assert_allclose(b.running_var.get(), allb.var(axis=0, ddof=1), rtol=1e-6)
    alla = np.concatenate(xa).astype(np.float64)
    np.testing.assert_allclose(a.running_mean.get(), alla.mean(axis=(0, 2, 3)), rtol=1e-6,
                               atol=1e-6)
    with pytest.raises(ValueError):
        clbn.update_bn([dev(queue, xa[0])], a, mode="median")
    fresh = clbn.BatchNorm2d(3, context=queue)
    rm = fresh.running_mean.get()
    with pytest.raises(clbn.Error) as e:
        clbn.update_bn([], fresh)  # commit without anything accumulated
    assert e.value.name == "CLBN_ERROR_NO_SAVED_STATISTICS"
    np.testing.assert_array_equal(fresh.running_mean.get(), rm)


# -- virtual (ghost) batches: need a libclbn with virtual_batch_size ----------

def ghost_reference(x, w, b, rm, rv, dy, v, eps, momentum):
    """Each group of v samples through F.batch_norm(training=True) in torch
    float64, dx/dweight/dbias by autograd; the running statistics by Keras's
    rule by hand: one update with the average of the groups' means and
    unbiased variances."""
    xt = t64(x).requires_grad_()
    wt, bt = t64(w).requires_grad_(), t64(b).requires_grad_()
    ys = [F.batch_norm(chunk, None, None, wt, bt, training=True, eps=eps)
          for chunk in torch.split(xt, v)]
    y = torch.cat(ys)
    y.backward(t64(dy))
    x64 = np.asarray(x, np.float64)
    groups = np.split(x64, x64.shape[0] // v)
    dims = (0,) + tuple(range(2, x64.ndim))
    gmean = np.array([g.mean(axis=dims) for g in groups])
    gvar = np.array([g.var(axis=dims, ddof=1) for g in groups])
    ginv = np.array([1 / np.sqrt(g.var(axis=dims) + eps) for g in groups])
    nrm = (1 - momentum) * np.asarray(rm, np.float64) + momentum * gmean.mean(0)
    nrv = (1 - momentum) * np.asarray(rv, np.float64) + momentum * gvar.mean(0)
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy(), nrm, nrv,
            gmean, ginv)


@needs_torch
@pytest.mark.parametrize("v", [2, 3])
def test_ghost_batch_norm_functional_matches_torch(plans, queue, rng, record, v):
    clbn = plans
    n, c = 6, 4
    eps, momentum = 0.05, 0.25
    x = (rng.standard_normal((n, c, 5)) * 2 + rng.uniform(-1, 1, (n, 1, 1))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    wgt, bias = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.uniform(-1, 1, c).astype(
        np.float32)
    rm0, rv0 = np.zeros(c, np.float32), np.ones(c, np.float32)
    ey, edx, edw, edb, erm, erv, gmean, ginv = ghost_reference(x, wgt, bias, rm0, rv0, dy, v,
                                                               eps, momentum)
    xd, wd = dev(queue, x), dev(queue, wgt)
    rmd, rvd = dev(queue, rm0), dev(queue, rv0)
    y, sm, si = clbn.functional.native_batch_norm(xd, wd, dev(queue, bias), rmd, rvd, True,
                                                  momentum, eps, virtual_batch_size=v)
    assert sm.size == (n // v) * c
    dx, dw, db = clbn.functional.batch_norm_backward(dev(queue, dy), xd, wd, save_mean=sm,
                                                     save_invstd=si, eps=eps,
                                                     virtual_batch_size=v)
    np.testing.assert_allclose(y.get(), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dx.get(), edx, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dw.get(), edw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db.get(), edb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sm.get().reshape(n // v, c), gmean, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(si.get().reshape(n // v, c), ginv, rtol=2e-6)
    np.testing.assert_allclose(rmd.get(), erm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(rvd.get(), erv, rtol=2e-6)
    record("ghost y", np.abs(y.get() - ey).max())
    record("ghost dx", np.abs(dx.get() - edx).max())


@needs_torch
def test_ghost_batch_norm_channels_last_and_views_refused(plans, queue, rng):
    """Ghost batches on a channels-last (NHWC strides) array: torch's chunks.
    A channel slice (a non-dense view) is refused with nothing changed, as
    the library documents."""
    clbn = plans
    n, c, v = 4, 3, 2
    x = rng.standard_normal((n, c, 3, 2)).astype(np.float32) + 1
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ey, edx, edw, edb, erm, erv, _, _ = ghost_reference(x, np.ones(c), np.zeros(c), np.zeros(c),
                                                        np.ones(c), dy, v, 1e-3, 0.1)
    xd = dev(queue, np.moveaxis(x, 1, -1)).transpose((0, 3, 1, 2))  # NHWC strides
    dyd = dev(queue, np.moveaxis(dy, 1, -1)).transpose((0, 3, 1, 2))
    rm, rv = dev(queue, np.zeros(c, np.float32)), dev(queue, np.ones(c, np.float32))
    y, sm, si = clbn.functional.native_batch_norm(xd, None, None, rm, rv, True, 0.1, 1e-3,
                                                  virtual_batch_size=v)
    dx, dw, db = clbn.functional.batch_norm_backward(dyd, xd, None, save_mean=sm,
                                                     save_invstd=si, eps=1e-3,
                                                     virtual_batch_size=v)
    assert y.strides == xd.strides and dx.strides == xd.strides
    from test_views import host_view
    np.testing.assert_allclose(host_view(y), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(host_view(dx), edx, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(db.get(), edb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rm.get(), erm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(rv.get(), erv, rtol=2e-6)
    wide = dev(queue, np.zeros((n, c + 2, 3, 2), np.float32))
    rm, rv = dev(queue, np.zeros(c, np.float32)), dev(queue, np.ones(c, np.float32))
    with pytest.raises(clbn.Error) as e:
        clbn.functional.batch_norm(wide[:, 1:1 + c], rm, rv, training=True,
                                   virtual_batch_size=v)
    assert e.value.name == "CLBN_ERROR_INVALID_OPTION"
    np.testing.assert_array_equal(rm.get(), 0.0)
    np.testing.assert_array_equal(rv.get(), 1.0)


@needs_torch
def test_ghost_batch_norm_module(clbn, queue, rng):
    n, c, v = 8, 3, 4
    bn = clbn.BatchNorm2d(c, momentum=0.1, virtual_batch_size=v, context=queue)
    x = rng.standard_normal((n, c, 2, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ey, edx, edw, edb, erm, erv, _, _ = ghost_reference(x, np.ones(c), np.zeros(c), np.zeros(c),
                                                        np.ones(c), dy, v, 1e-5, 0.1)
    y = bn(dev(queue, x))
    dx = bn.backward(dev(queue, dy))
    np.testing.assert_allclose(y.get(), ey, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dx.get(), edx, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(bn.weight.grad.get(), edw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.get(), erm, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(bn.running_var.get(), erv, rtol=2e-6)


def test_ghost_batch_norm_whole_batch_is_plain_and_bad_v_is_refused(plans, queue, rng):
    clbn = plans
    x = dev(queue, rng.standard_normal((6, 3, 4)).astype(np.float32))
    outs = []
    for v in (None, 6):
        rm, rv = dev(queue, np.zeros(3, np.float32)), dev(queue, np.ones(3, np.float32))
        y = clbn.functional.batch_norm(x, rm, rv, training=True, virtual_batch_size=v)
        outs.append((y.get(), rm.get(), rv.get()))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    rm, rv = dev(queue, np.zeros(3, np.float32)), dev(queue, np.ones(3, np.float32))
    y = dev(queue, np.full((6, 3, 4), 7.0, np.float32))
    with pytest.raises(clbn.Error) as e:
        clbn.functional.batch_norm(x, rm, rv, training=True, virtual_batch_size=4, out=y)
    assert e.value.name == "CLBN_ERROR_INVALID_OPTION"
    np.testing.assert_array_equal(y.get(), 7.0)
    np.testing.assert_array_equal(rm.get(), 0.0)
