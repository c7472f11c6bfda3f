import os
import sys

import pytest

pytest.importorskip("pyopencl")
pytest.importorskip("numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Running from the source tree: the package is python/clbn.
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _here not in sys.path:
    sys.path.insert(0, _here)

import numpy as np  # noqa: E402

_DIFFS = {}


@pytest.fixture(scope="session")
def clbn():
    import pyopencl as cl
    try:
        import clbn as mod
        ctx = mod.default_context()
    except (ImportError, cl.Error) as e:
        pytest.skip("no libclbn or no OpenCL device: %s" % e)
    except Exception as e:  # clbn.Error: CLBN_ERROR_NO_DEVICE
        if getattr(e, "name", "") in ("CLBN_ERROR_NO_DEVICE", "CLBN_ERROR_DEVICE_NOT_FOUND"):
            pytest.skip(str(e))
        raise
    return mod


@pytest.fixture(scope="session")
def ctx(clbn):
    return clbn.default_context()


@pytest.fixture(scope="session")
def queue(ctx):
    return ctx.queue


@pytest.fixture(scope="session")
def fp64(ctx):
    return ctx.supports(np.float64)


@pytest.fixture
def record():
    """record(name, diff): keeps the largest difference seen under `name`."""
    def rec(name, diff):
        _DIFFS[name] = max(_DIFFS.get(name, 0.0), float(diff))
        return diff
    return rec


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter):
    if _DIFFS:
        terminalreporter.write_line("largest differences measured:")
        for k in sorted(_DIFFS):
            terminalreporter.write_line("  %-48s %.3g" % (k, _DIFFS[k]))


@pytest.fixture
def plans(clbn):
    """clbn, when the library has execution plans (else the test is skipped)."""
    if not clbn.plans_available():
        pytest.skip("libclbn has no execution plans")
    return clbn
