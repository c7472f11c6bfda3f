"""Runs the Python examples of README.md and docs/*.md: every ```python block
preceded by `<!-- run: python -->` is executed as written, so the front page
and the guides cannot drift from the package."""
import glob
import os
import re

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _examples():
    found = []
    for path in [os.path.join(_ROOT, "README.md")] + sorted(glob.glob(os.path.join(_ROOT, "docs", "*.md"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for k, code in enumerate(re.findall(r"<!-- run: python -->\s*\n```python\n(.*?)```", text, re.S)):
            found.append(pytest.param(code, id="%s-%d" % (os.path.basename(path), k)))
    return found


@pytest.mark.parametrize("code", _examples())
def test_example_runs(clbn, code):
    exec(compile(code, "<docs example>", "exec"), {})


def test_readme_has_a_python_example():
    assert _examples(), "README.md lost its <!-- run: python --> example"
