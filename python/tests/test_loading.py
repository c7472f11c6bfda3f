"""Finding libclbn, and the package's surface."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)


def run_py(code, **env):
    e = dict(os.environ, PYTHONPATH=PKG, **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                          timeout=120)


def test_missing_library_is_an_import_error():
    r = run_py("import clbn", CLBN_LIBRARY="/nonexistent/libclbn.so")
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and "CLBN_LIBRARY" in r.stderr


def test_library_path_and_version(clbn):
    path = clbn.library_path()
    assert os.path.exists(path)
    if os.environ.get("CLBN_LIBRARY"):
        assert os.path.samefile(path, os.environ["CLBN_LIBRARY"])
    major, minor, patch = map(int, clbn.version().split("."))
    assert (major, minor, patch) >= (0, 1, 0)


def test_build_tree_fallback(clbn):
    """From the source tree without CLBN_LIBRARY, a build folder's libclbn is found."""
    env = dict(os.environ)
    env.pop("CLBN_LIBRARY", None)
    r = subprocess.run([sys.executable, "-c", "import clbn; print(clbn.library_path())"],
                       env=dict(env, PYTHONPATH=PKG), capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        pytest.skip("no libclbn in build/*/ or installed: %s" % r.stderr.strip()[-200:])
    assert "libclbn" in r.stdout


def test_error_class(clbn):
    e = clbn.Error(-8, "clbn_forward_training")
    assert e.name == "CLBN_ERROR_INVALID_EPSILON" and e.status == -8
    assert "epsilon" in str(e) and "clbn_forward_training" in str(e)
    assert clbn.Error(-12345).name  # unknown values still have a name
    assert clbn.Error.__module__ == "clbn"


def test_default_context_is_pyopencl(clbn):
    import pyopencl as cl
    ctx = clbn.default_context()
    assert isinstance(ctx.cl_context, cl.Context)
    assert isinstance(ctx.queue, cl.CommandQueue) and ctx.queue.context == ctx.cl_context
    assert isinstance(ctx.device, cl.Device)
    assert clbn.get_context(ctx.queue) is ctx
    ctx.prepare("float32")
    assert ctx.build_log == ""
