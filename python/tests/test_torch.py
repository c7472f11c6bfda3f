"""clbn side by side with PyTorch (skipped when torch is not importable)."""

import json
import struct

import numpy as np
import pyopencl.array as cla
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    kinds = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + end], kinds[e["dtype"]]).reshape(
            e["shape"])
    return out


CASES = [("BatchNorm1d", (16, 6)), ("BatchNorm1d", (4, 6, 9)), ("BatchNorm2d", (4, 6, 5, 7)),
         ("BatchNorm3d", (2, 6, 3, 4, 5))]


@pytest.mark.parametrize("cls,shape", CASES)
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_matches_torch(clbn, queue, rng, record, fp64, cls, shape, momentum, dtype):
    if dtype == np.float64 and not fp64:
        pytest.skip("no cl_khr_fp64")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    c = shape[1]
    tbn = getattr(torch.nn, cls)(c, eps=1e-4, momentum=momentum).to(tdt)
    bn = getattr(clbn, cls)(c, eps=1e-4, momentum=momentum, dtype=dtype, context=queue)
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c)))
        tbn.bias.copy_(torch.from_numpy(rng.uniform(-1, 1, c)))
    bn.load_state_dict(tbn.state_dict())
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    name = "f32" if dtype == np.float32 else "f64"
    for step in range(5):
        x = (rng.standard_normal(shape) * (1 + step) + 2).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tx = torch.from_numpy(x).requires_grad_()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(dy))
        y = bn(dev(queue, x))
        dx = bn.backward(dev(queue, dy))
        np.testing.assert_allclose(y.get(), ty.detach().numpy(), **tol)
        np.testing.assert_allclose(dx.get(), tx.grad.numpy(), **tol)
        record("torch %s train y" % name, np.max(np.abs(y.get() - ty.detach().numpy())))
        record("torch %s train dx" % name, np.max(np.abs(dx.get() - tx.grad.numpy())))
    sd, tsd = bn.state_dict(), tbn.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        np.testing.assert_allclose(sd[k], tsd[k].numpy(), **tol)
        if k != "num_batches_tracked":
            record("torch %s %s after 5 steps" % (name, k),
                   np.max(np.abs(sd[k] - tsd[k].numpy())))
    # accumulated gradients (5 backward calls without zero_grad)
    np.testing.assert_allclose(bn.weight.grad.get(), tbn.weight.grad.numpy(),
                               rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_allclose(bn.bias.grad.get(), tbn.bias.grad.numpy(),
                               rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    record("torch %s accumulated weight.grad" % name,
           np.max(np.abs(bn.weight.grad.get() - tbn.weight.grad.numpy())))
    # eval, forward and backward
    bn.eval()
    tbn.eval()
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    tx = torch.from_numpy(x).requires_grad_()
    ty = tbn(tx)
    ty.backward(torch.from_numpy(dy))
    y = bn(dev(queue, x))
    dx = bn.backward(dev(queue, dy))
    np.testing.assert_allclose(y.get(), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx.get(), tx.grad.numpy(), **tol)
    record("torch %s eval y" % name, np.max(np.abs(y.get() - ty.detach().numpy())))


def test_state_dict_both_ways(clbn, queue, rng, tmp_path):
    from clbn.modules import safetensors_bytes
    tbn = torch.nn.BatchNorm2d(5)
    for _ in range(3):
        tbn(torch.randn(4, 5, 3, 3) * 3 + 1)
    with torch.no_grad():
        tbn.weight.mul_(2)
    bn = clbn.BatchNorm2d(5, context=queue)
    bn.load_state_dict(tbn.state_dict())  # torch tensors accepted
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, tbn.state_dict()[k].numpy())
    # clbn -> torch
    for _ in range(2):
        bn(dev(queue, rng.standard_normal((4, 5, 3, 3)).astype(np.float32)))
    t2 = torch.nn.BatchNorm2d(5)
    t2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bn.state_dict().items()})
    assert int(t2.num_batches_tracked) == 5
    np.testing.assert_array_equal(t2.running_var.numpy(), bn.running_var.get())
    # safetensors both ways (the file format safetensors.torch uses)
    path = str(tmp_path / "bn.safetensors")
    bn.save_safetensors(path, prefix="bn1.")
    st = read_safetensors(path)
    t3 = torch.nn.BatchNorm2d(5)
    t3.load_state_dict({k[4:]: torch.from_numpy(v.copy()) for k, v in st.items()})
    np.testing.assert_array_equal(t3.running_mean.numpy(), bn.running_mean.get())
    p2 = tmp_path / "t.safetensors"
    p2.write_bytes(safetensors_bytes({"m." + k: v.numpy() for k, v in t3.state_dict().items()}))
    bn5 = clbn.BatchNorm2d(5, context=queue)
    bn5.load_safetensors(str(p2), "m.")
    assert bn5.num_batches_tracked == 5


@pytest.mark.parametrize("shape", [(8, 4), (3, 4, 6), (2, 4, 5, 3), (2, 4, 2, 3, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_functional_matches_torch(clbn, queue, rng, record, shape, channels_last):
    x = (rng.standard_normal(shape) + 5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.uniform(-1, 1, c).astype(np.float32)
    tx = torch.from_numpy(x)
    if channels_last and len(shape) in (4, 5):
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        tx = tx.contiguous(memory_format=fmt)
    tx.requires_grad_()
    trm, trv = torch.zeros(c), torch.ones(c)
    tw = torch.from_numpy(w).requires_grad_()
    tb = torch.from_numpy(b).requires_grad_()
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3, eps=1e-3)
    ty.backward(torch.from_numpy(dy))
    if channels_last and len(shape) > 2:
        perm = (0,) + tuple(range(2, len(shape))) + (1,)
        inv = tuple(np.argsort(perm))
        xd = dev(queue, x.transpose(perm)).transpose(inv)  # torch.channels_last strides
        dyd = dev(queue, dy.transpose(perm)).transpose(inv)
        if len(shape) in (4, 5):  # the same strides as torch's channels_last tensor
            assert xd.strides == tuple(4 * s for s in tx.stride())
        get = lambda a: a.transpose(perm).get().transpose(inv)  # noqa: E731
    else:
        xd, dyd = dev(queue, x), dev(queue, dy)
        get = lambda a: a.get()  # noqa: E731
    rm, rv = dev(queue, np.zeros(c, np.float32)), dev(queue, np.ones(c, np.float32))
    wd, bd = dev(queue, w), dev(queue, b)
    y, sm, si = clbn.functional.native_batch_norm(xd, wd, bd, rm, rv, True, 0.3, 1e-3)
    dx, dw, db = clbn.functional.batch_norm_backward(dyd, xd, wd, None, None, sm, si, True,
                                                     1e-3)
    np.testing.assert_allclose(get(y), ty.detach().numpy(), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(rm.get(), trm.numpy(), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(rv.get(), trv.numpy(), rtol=2e-5)
    np.testing.assert_allclose(get(dx), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw.get(), tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db.get(), tb.grad.numpy(), rtol=1e-4, atol=1e-4)
    record("torch functional f32 y", np.max(np.abs(get(y) - ty.detach().numpy())))
    record("torch functional f32 dx", np.max(np.abs(get(dx) - tx.grad.numpy())))
    record("torch functional f32 dweight", np.max(np.abs(dw.get() - tw.grad.numpy())))
    # eval
    ty2 = F.batch_norm(tx.detach(), trm, trv, tw.detach(), tb.detach(), False, 0.3, 1e-3)
    y2 = clbn.functional.batch_norm(xd, rm, rv, wd, bd, False, 0.3, 1e-3)
    np.testing.assert_allclose(get(y2), ty2.numpy(), rtol=2e-5, atol=2e-5)


def test_fold_matches_torch(clbn, queue, rng):
    from torch.nn.utils import fuse_conv_bn_eval
    conv = torch.nn.Conv2d(3, 4, 3, bias=True)
    tbn = torch.nn.BatchNorm2d(4, eps=1e-3)
    for _ in range(3):
        tbn(torch.randn(2, 4, 5, 5) * 2)
    conv.eval()
    tbn.eval()
    fused = fuse_conv_bn_eval(conv, tbn)
    bn = clbn.BatchNorm2d(4, eps=1e-3, context=queue)
    bn.load_state_dict(tbn.state_dict())
    bn.eval()
    fw, fb = bn.fold_into_conv(dev(queue, conv.weight.detach().numpy()),
                               dev(queue, conv.bias.detach().numpy()))
    np.testing.assert_allclose(fw.get(), fused.weight.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fb.get(), fused.bias.detach().numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("affine,track", [(False, True), (True, False), (False, False)])
def test_module_options_match_torch(clbn, queue, rng, affine, track):
    tbn = torch.nn.BatchNorm2d(4, affine=affine, track_running_stats=track)
    bn = clbn.BatchNorm2d(4, affine=affine, track_running_stats=track, context=queue)
    for step in range(3):
        x = (rng.standard_normal((3, 4, 5, 5)) + step).astype(np.float32)
        dy = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(dy))
        y = bn(dev(queue, x))
        dx = bn.backward(dev(queue, dy))
        np.testing.assert_allclose(y.get(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dx.get(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert list(bn.state_dict()) == list(tbn.state_dict())
    tbn.eval()
    bn.eval()
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(bn(dev(queue, x)).get(), tbn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-4)


def test_channels_last_module_matches_torch(clbn, queue, rng):
    tbn = torch.nn.BatchNorm2d(6)
    bn = clbn.BatchNorm2d(6, context=queue)
    x = rng.standard_normal((3, 6, 4, 5)).astype(np.float32)
    tx = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    ty = tbn(tx)
    xd = dev(queue, x.transpose(0, 2, 3, 1)).transpose((0, 3, 1, 2))  # same strides as tx
    y = bn(xd)
    assert y.strides == xd.strides
    np.testing.assert_allclose(y.transpose((0, 2, 3, 1)).get().transpose(0, 3, 1, 2),
                               ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_var.get(), tbn.running_var.numpy(), rtol=1e-5)
