"""clbn.BatchNorm1d/2d/3d against the float64 numpy references."""

import os

import numpy as np
import pyopencl.array as cla
import pytest

import reference as ref


def dev(queue, a):
    return cla.to_device(queue, np.ascontiguousarray(a))


class RefBN:
    """A float64 numpy model of nn.BatchNormNd's state and steps."""

    def __init__(self, c, eps=1e-5, momentum=0.1, affine=True, track=True):
        self.eps, self.momentum, self.affine, self.track = eps, momentum, affine, track
        self.w, self.b = np.ones(c), np.zeros(c)
        self.rm, self.rv, self.nbt = np.zeros(c), np.ones(c), 0
        self.gw, self.gb = np.zeros(c), np.zeros(c)
        self.training = True

    def forward(self, x):
        w = self.w if self.affine else None
        b = self.b if self.affine else None
        if self.training or not self.track:
            if self.training and self.track:
                self.nbt += 1
                mom = 1.0 / self.nbt if self.momentum is None else self.momentum
                y, mean, inv, self.rm, self.rv = ref.forward_training(x, w, b, self.rm, self.rv,
                                                                      mom, self.eps)
            else:
                y, mean, inv, _, _ = ref.forward_training(x, w, b, eps=self.eps)
            self.saved = ("batch", x, mean, inv)
        else:
            y = ref.forward_inference(x, self.rm, self.rv, w, b, self.eps)
            self.saved = ("running", x)
        return y

    def backward(self, dy):
        w = self.w if self.affine else None
        if self.saved[0] == "batch":
            _, x, mean, inv = self.saved
            dx, dw, db = ref.backward_training(x, dy, mean, inv, w)
        else:
            x = self.saved[1]
            dx, dw, db = ref.backward_inference(x, dy, self.rm, self.rv, w, self.eps)
        self.gw += dw
        self.gb += db
        return dx


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 5)), ("BatchNorm1d", (4, 5, 7)),
                                       ("BatchNorm2d", (3, 5, 4, 6)),
                                       ("BatchNorm3d", (2, 5, 3, 2, 4))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_steps_and_eval(clbn, queue, rng, record, cls, shape, momentum):
    c = shape[1]
    bn = getattr(clbn, cls)(c, eps=1e-3, momentum=momentum, context=queue)
    model = RefBN(c, 1e-3, momentum)
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bn.weight.set(w)  # the arrays are the layer's own buffers
    model.w = w.astype(np.float64)
    assert bn.training
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        y = bn(dev(queue, x))
        ey = model.forward(ref.to_ncs(x))
        np.testing.assert_allclose(ref.to_ncs(y.get()), ey, rtol=3e-5, atol=3e-5)
        dx = bn.backward(dev(queue, dy))
        edx = model.backward(ref.to_ncs(dy))
        np.testing.assert_allclose(ref.to_ncs(dx.get()), edx, rtol=1e-4, atol=1e-4)
        record("module f32 train y vs numpy", ref.maxdiff(ref.to_ncs(y.get()), ey))
    assert bn.num_batches_tracked == 4
    np.testing.assert_allclose(bn.running_mean.get(), model.rm, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(bn.running_var.get(), model.rv, rtol=2e-5)
    np.testing.assert_allclose(bn.weight.grad.get(), model.gw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.bias_grad.get(), model.gb, rtol=1e-4, atol=1e-4)
    record("module f32 running_var after 4 steps vs numpy (rel)",
           np.max(np.abs(bn.running_var.get() / model.rv - 1)))
    record("module f32 accumulated weight grad vs numpy", ref.maxdiff(bn.weight.grad.get(),
                                                                      model.gw))
    bn.eval()
    model.training = False
    assert not bn.training
    x = rng.standard_normal(shape).astype(np.float32)
    y = bn(dev(queue, x))
    ey = model.forward(ref.to_ncs(x))
    np.testing.assert_allclose(ref.to_ncs(y.get()), ey, rtol=3e-5, atol=3e-5)
    assert bn.num_batches_tracked == 4
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = bn.backward(dev(queue, dy))
    np.testing.assert_allclose(ref.to_ncs(dx.get()), model.backward(ref.to_ncs(dy)),
                               rtol=1e-4, atol=1e-4)
    bn.zero_grad()
    assert not bn.weight.grad.get().any() and not bn.bias.grad.get().any()


def test_affine_false_and_no_running_stats(clbn, queue, rng):
    bn = clbn.BatchNorm2d(3, affine=False, track_running_stats=False, context=queue)
    assert bn.weight is None and bn.running_mean is None
    assert set(bn.state_dict()) == set()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    bn.eval()  # without running statistics eval normalizes with the batch's
    y = bn(dev(queue, x))
    ey, _, _, _, _ = ref.forward_training(ref.to_ncs(x))
    np.testing.assert_allclose(ref.to_ncs(y.get()), ey, rtol=3e-5, atol=3e-5)
    assert bn.num_batches_tracked == 0
    with pytest.raises(ValueError):
        bn(dev(queue, x[0]))  # 3-d input to BatchNorm2d


def test_state_dict_round_trip_and_files(clbn, queue, rng, tmp_path):
    bn = clbn.BatchNorm1d(6, context=queue)
    for _ in range(3):
        bn(dev(queue, rng.standard_normal((5, 6)).astype(np.float32)))
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"] == 3
    sd2 = {k: (v * 2 + 1 if v.dtype == np.float32 else np.array(11, np.int64))
           for k, v in sd.items()}
    bn2 = clbn.BatchNorm1d(6, context=queue)
    missing, unexpected = bn2.load_state_dict(sd2)
    assert not missing and not unexpected
    got = bn2.state_dict()
    for k in sd2:
        np.testing.assert_array_equal(got[k], sd2[k])
    np.testing.assert_array_equal(bn2.running_var.get(), sd2["running_var"])
    with pytest.raises(RuntimeError):
        bn2.load_state_dict({"weight": sd["weight"]})
    bn2.load_state_dict({"weight": sd["weight"]}, strict=False)
    np.testing.assert_array_equal(bn2.weight.get(), sd["weight"])
    np.testing.assert_array_equal(bn2.bias.get(), sd2["bias"])
    with pytest.raises(ValueError):
        bn2.load_state_dict(dict(sd, weight=np.ones(5)))
    # safetensors, with a prefix, and clbn's own format
    path = str(tmp_path / "bn.safetensors")
    bn.save_safetensors(path, prefix="layer1.bn.")
    bn3 = clbn.BatchNorm1d(6, context=queue)
    bn3.load_safetensors(path, prefix="layer1.bn.")
    for k, v in bn3.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    with pytest.raises(clbn.Error) as e:
        bn3.load_safetensors(path)
    assert e.value.name == "CLBN_ERROR_TENSOR_NOT_FOUND"
    with pytest.raises(clbn.Error) as e:
        clbn.BatchNorm1d(7, context=queue).load_safetensors(path, "layer1.bn.")
    assert e.value.name == "CLBN_ERROR_STATE_MISMATCH"
    p2 = str(tmp_path / "bn.clbn")
    bn.save(p2)
    bn4 = clbn.BatchNorm1d(6, context=queue)
    bn4.load(p2)
    assert bn4.num_batches_tracked == 3
    with open(p2, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(clbn.Error) as e:
        bn4.load(p2)
    assert e.value.name in ("CLBN_ERROR_FILE_CHECKSUM", "CLBN_ERROR_FILE_FORMAT")


def test_reset_and_writes_to_buffers(clbn, queue, rng):
    bn = clbn.BatchNorm2d(2, context=queue)
    bn(dev(queue, rng.standard_normal((2, 2, 3, 3)).astype(np.float32)))
    bn.weight.fill(3.0)
    assert bn.state_dict()["weight"].tolist() == [3.0, 3.0]
    bn.reset_running_stats()
    assert bn.num_batches_tracked == 0 and bn.running_var.get().tolist() == [1.0, 1.0]
    assert bn.weight.get().tolist() == [3.0, 3.0]
    bn.reset_parameters()
    assert bn.weight.get().tolist() == [1.0, 1.0]


def test_channels_last_module(clbn, queue, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    bn = clbn.BatchNorm2d(5, channels_last=True, context=queue)  # (N, H, W, C) arrays
    y = bn(dev(queue, x))
    ey, _, _, _, _ = ref.forward_training(ref.to_ncs(x, channels_last=True))
    np.testing.assert_allclose(ref.to_ncs(y.get(), channels_last=True), ey, rtol=3e-5,
                               atol=3e-5)


def test_fused_relu_module(clbn, queue, rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    z = rng.standard_normal((4, 3, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 3, 5)).astype(np.float32)
    bn = clbn.BatchNorm1d(3, fused="add_relu", context=queue)
    y = bn(dev(queue, x), dev(queue, z))
    e, mean, inv, _, _ = ref.forward_training(x.astype(np.float64))
    ey = np.maximum(e + z, 0)
    np.testing.assert_allclose(y.get(), ey, rtol=3e-5, atol=3e-5)
    dx, dz = bn.backward(dev(queue, dy))
    g = np.where(ey > 0, dy, 0.0)
    edx, edw, edb = ref.backward_training(x.astype(np.float64), g, mean, inv)
    np.testing.assert_allclose(dz.get(), g, rtol=0, atol=0)
    np.testing.assert_allclose(dx.get(), edx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.weight.grad.get(), edw, rtol=1e-4, atol=1e-4)


def test_module_fold_into_conv(clbn, queue, rng):
    bn = clbn.BatchNorm2d(4, eps=1e-3, context=queue)
    for _ in range(2):
        bn(dev(queue, rng.standard_normal((3, 4, 5, 5)).astype(np.float32)))
    bn.weight.set(rng.uniform(0.5, 2, 4).astype(np.float32))
    bn.eval()
    cw = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    fw, fb = bn.fold_into_conv(dev(queue, cw))
    sd = bn.state_dict()
    ew, eb = ref.fold(cw.astype(np.float64), None, sd["running_mean"], sd["running_var"],
                      sd["weight"], sd["bias"], 1e-3)
    np.testing.assert_allclose(fw.get(), ew, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(fb.get(), eb, rtol=2e-6, atol=2e-6)


def test_float64_module(clbn, queue, rng, fp64):
    if not fp64:
        pytest.skip("no cl_khr_fp64")
    bn = clbn.BatchNorm1d(3, dtype=np.float64, context=queue)
    assert bn.running_mean.dtype == np.float64
    model = RefBN(3)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5)) * 10 + 100
        y = bn(dev(queue, x))
        np.testing.assert_allclose(y.get(), model.forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_var.get(), model.rv, rtol=1e-13)
    assert bn.state_dict()["running_var"].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_16bit_modules(clbn, queue, rng, record, dtype):
    xf = rng.standard_normal((4, 3, 6)).astype(np.float32)
    if dtype == "bfloat16":
        bits = ref.bf16_round(xf)
        x64 = ref.bf16_to_f32(bits).astype(np.float64)
        xd = dev(queue, bits)
        back = lambda a: ref.bf16_to_f32(a).astype(np.float64)  # noqa: E731
        rtol = 2 ** -8
    else:
        x16 = xf.astype(np.float16)
        x64 = x16.astype(np.float64)
        xd = dev(queue, x16)
        back = lambda a: a.astype(np.float64)  # noqa: E731
        rtol = 2 ** -11
    bn = clbn.BatchNorm1d(3, dtype=dtype, context=queue)
    assert bn.running_mean.dtype == np.float32
    y = bn(xd)
    assert y.dtype == xd.dtype
    model = RefBN(3)
    ey = model.forward(x64)
    np.testing.assert_allclose(back(y.get()), ey, rtol=rtol, atol=rtol * 4)
    np.testing.assert_allclose(bn.running_var.get(), model.rv, rtol=1e-5)
    record("module %s y vs numpy" % np.dtype(np.float16 if dtype != "bfloat16" else np.uint16)
           if dtype != "bfloat16" else "module bf16 y vs numpy", ref.maxdiff(back(y.get()), ey))
