"""The ctypes mirrors (clbn._plan_abi, clbn._lib) against include/clbn.h:
a small C program prints offsetof/sizeof of every mirrored field the header
has; a field the header does not have yet (appended on another branch) must
start where the C struct ends. Needs a C compiler and the OpenCL headers."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _c_fields(header, struct):
    body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct, struct), header, re.S)
    assert body, struct
    text = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    return set(re.findall(r"\b(\w+)\s*(?=[,;])", text))


def test_ctypes_layout_matches_the_header(clbn, tmp_path):
    from clbn import _lib, _plan_abi
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    with open(os.path.join(_ROOT, "include", "clbn.h"), encoding="utf-8") as f:
        header = f.read()
    os.makedirs(tmp_path / "clbn")
    (tmp_path / "clbn" / "version.h").write_text("#define CLBN_VERSION_NUMBER 0\n")
    mirrors = [("clbn_op_desc", _plan_abi.OpDescFields), ("clbn_args", _plan_abi.ArgsFields),
               ("clbn_layer_config", _lib.LayerConfig), ("clbn_tensor_view", _plan_abi.TensorView),
               ("clbn_tensor_desc", _lib.TensorDesc)]
    lines, expect, appended = [], [], []
    for cname, py in mirrors:
        known = _c_fields(header, cname)
        lines.append('printf("%%zu\\n", sizeof(%s));' % cname)
        expect.append(("sizeof", cname, None))
        for name, _t in py._fields_:
            if name in known:
                lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (cname, name))
                expect.append((cname, name, getattr(py, name).offset))
            else:
                appended.append((cname, name, getattr(py, name).offset))
    src = tmp_path / "abi.c"
    src.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "clbn.h"\n'
                   "int main(void) {\n%s\nreturn 0;\n}\n" % "\n".join(lines))
    exe = tmp_path / "abi"
    r = subprocess.run([cc, "-I", str(tmp_path), "-I", os.path.join(_ROOT, "include"), str(src),
                        "-o", str(exe)], capture_output=True, text=True)
    if r.returncode and "CL/cl" in r.stderr:
        pytest.skip("no OpenCL headers: " + r.stderr.strip().splitlines()[0])
    assert r.returncode == 0, r.stderr
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True,
                                          check=True).stdout.split()]
    sizes = {}
    for (kind, name, off), value in zip(expect, got):
        if kind == "sizeof":
            sizes[name] = value
        else:
            assert off == value, "%s.%s: ctypes offset %d, C %d" % (kind, name, off, value)
    for cname, name, off in appended:
        # a field another branch appends: right after the header's last field
        py = dict(mirrors)[cname]
        align = ctypes.alignment(dict(py._fields_)[name])
        assert off == (sizes[cname] + align - 1) // align * align, \
            "%s.%s: ctypes offset %d, the C struct ends at %d" % (cname, name, off, sizes[cname])
    for cname, py in mirrors:
        if not any(a[0] == cname for a in appended):
            assert ctypes.sizeof(py) == sizes[cname], cname
    assert ctypes.sizeof(_plan_abi.OpDesc) >= sizes["clbn_op_desc"] + 256
    assert ctypes.sizeof(_plan_abi.Args) >= sizes["clbn_args"] + 256


def test_op_desc_size_is_measured(clbn):
    from clbn import _plan_abi
    size = _plan_abi.op_desc_size()
    assert _plan_abi.knows("renorm") and _plan_abi.knows("dz_view")
    assert size >= _plan_abi.OpDescFields.renorm.offset + 4
