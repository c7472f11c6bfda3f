#!/usr/bin/env python3
"""Keeps work-group barriers where every work-item of a group reaches them.

OpenCL requires every work-item of a work-group to reach each barrier (and
the same number of times). A barrier inside `if`, even on a condition that
is the same for the whole group, is legal OpenCL, but PoCL 3.1 miscompiled
one (cl/channel.cl, 2026-12-06: the work-items after the barrier all ran the
first one's part), and on a condition that differs between work-items it is
undefined on every device. So the kernels in cl/ follow a stricter rule,
which this script checks:

  1. no barrier, and no call of a function or macro that contains one, inside
     an if/else/switch branch or after `?`, `&&` or `||` in an expression;
  2. no conditional `return` (also one inside a macro, such as ROWS_ITEM)
     before a barrier of the same function or macro;
  3. no conditional `break` or `continue` in a loop whose body reaches a
     barrier.
Loops may hold barriers: their trip counts are the kernels' business (they
are uniform in every loop that has one today; this script cannot tell).

Usage: lint_barriers.py FILE.cl...   (exit 1 and one line per finding)
       lint_barriers.py --self-test  (the rules against snippets that break
                                      and keep each of them)
The source is read with comments, strings and preprocessor lines other than
#define removed; #if branches are read together (both sides of every #if
in cl/ keep their braces balanced)."""

import re
import sys

BARRIERS = {"barrier", "work_group_barrier"}
TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|&&|\|\||[{}()\[\];?:,]|\S")


def strip(text):
    """Comments and string literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (min(j + 1, n) - i))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def tokens(text, start, end):
    return [(m.group(0), start + m.start()) for m in TOKEN.finditer(text[start:end])
            if m.group(0) != "\\"]  # a macro's line continuations


def units(text):
    """(name, body tokens, kind) of every #define with a body and every
    function with a body; the rest of the file's preprocessor lines are blanked."""
    found = []
    chars = list(text)
    for m in re.finditer(r"^[ \t]*#(?:\\\n|[^\n])*", text, re.M):
        line = m.group(0)
        d = re.match(r"[ \t]*#[ \t]*define[ \t]+(\w+)(\([^)]*\))?", line)
        if d:
            found.append((d.group(1), tokens(text, m.start() + d.end(), m.end()), "macro"))
        for i in range(m.start(), m.end()):
            if chars[i] != "\n":
                chars[i] = " "
    code = "".join(chars)
    toks = tokens(code, 0, len(code))
    depth = 0
    for i, (t, _) in enumerate(toks):
        if t == "{":
            if depth == 0 and i > 0 and toks[i - 1][0] == ")":
                j, paren = i - 1, 0  # back to the parameter list's "("
                while j >= 0:
                    paren += {")": 1, "(": -1}.get(toks[j][0], 0)
                    if paren == 0:
                        break
                    j -= 1
                k, d = i, 0
                while k < len(toks):
                    d += {"{": 1, "}": -1}.get(toks[k][0], 0)
                    if d == 0:
                        break
                    k += 1
                if j > 0 and re.match(r"[A-Za-z_]\w*$", toks[j - 1][0]):
                    found.append((toks[j - 1][0], toks[i:k + 1], "function"))
            depth += 1
        elif t == "}":
            depth -= 1
    return found


class Walk:
    """The events of one body: calls (name, offset, conditional, loops),
    returns and breaks, with whether they are conditional."""

    def __init__(self, toks):
        self.t = toks
        self.i = 0
        self.calls, self.returns, self.breaks = [], [], []

    def peek(self):
        return self.t[self.i][0] if self.i < len(self.t) else None

    def skip_parens(self):
        """From "(" past its ")", recording the calls inside (conditional
        like the statement they head)."""
        if self.peek() != "(":
            return
        depth = 0
        while self.i < len(self.t):
            depth += {"(": 1, ")": -1}.get(self.t[self.i][0], 0)
            self.i += 1
            if depth == 0:
                return

    def statement(self, cond, loops):
        t = self.peek()
        if t is None:
            return
        if t == "{":
            self.i += 1
            while self.peek() not in (None, "}"):
                self.statement(cond, loops)
            self.i += 1
        elif t == "if":
            self.i += 1
            self.expression_until_close(cond, loops)
            self.statement(True, loops)
            if self.peek() == "else":
                self.i += 1
                self.statement(True, loops)
        elif t == "switch":
            self.i += 1
            self.expression_until_close(cond, loops)
            self.statement(True, loops)
        elif t in ("for", "while"):
            self.i += 1
            self.expression_until_close(cond, loops)
            frame = {"cond": cond, "start": len(self.calls)}
            self.statement(cond, loops + [frame])
            frame["calls"] = self.calls[frame["start"]:]
        elif t == "do":
            self.i += 1
            frame = {"cond": cond, "start": len(self.calls)}
            self.statement(cond, loops + [frame])
            frame["calls"] = self.calls[frame["start"]:]
            if self.peek() == "while":
                self.i += 1
                self.expression_until_close(cond, loops)
            if self.peek() == ";":
                self.i += 1
        elif t in ("return", "break", "continue"):
            at = self.t[self.i][1]
            self.i += 1
            self.expression(cond, loops)
            if t == "return":
                self.returns.append((at, cond))
            elif loops:
                self.breaks.append((at, cond and not loops[-1]["cond"], loops[-1]))
        elif t in (";", "}"):
            self.i += 1 if t == ";" else 0
            if t == "}":  # unbalanced (a macro's fragment): stop here
                self.i = len(self.t)
        else:
            self.expression(cond, loops)

    def expression_until_close(self, cond, loops):
        """A parenthesized head (if, for, while, switch): its calls."""
        start = self.i
        self.skip_parens()
        self.scan(self.t[start:self.i], cond, loops)

    def expression(self, cond, loops):
        """Up to the ";" that ends the statement (or the body's end)."""
        start, depth = self.i, 0
        while self.i < len(self.t):
            t = self.t[self.i][0]
            if t in "([{":
                depth += 1
            elif t in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif t == ";" and depth == 0:
                self.i += 1
                break
            self.i += 1
        self.scan(self.t[start:self.i], cond, loops)

    def scan(self, toks, cond, loops):
        c = cond
        for k, (t, at) in enumerate(toks):
            if t in ("?", "&&", "||"):
                c = True
            elif re.match(r"[A-Za-z_]\w*$", t) and k + 1 < len(toks) and toks[k + 1][0] == "(":
                self.calls.append((t, at, c, loops))


def lint(sources):
    """Findings, (path, line, text), over the files' {path: text}."""
    bodies = []
    for path, text in sources.items():
        clean = strip(text)
        for name, toks, kind in units(clean):
            w = Walk(toks)
            while w.i < len(w.t):
                w.statement(False, [])
            w.kind = kind
            bodies.append((path, text, name, w))
    holders = set(BARRIERS)
    grew = True
    while grew:
        grew = False
        for _, _, name, w in bodies:
            if name not in holders and any(c[0] in holders for c in w.calls):
                holders.add(name)
                grew = True
    # macros whose expansion may return early (ROWS_ITEM); a function's
    # return leaves only itself
    early = {name for _, _, name, w in bodies
             if w.kind == "macro" and any(cond for _, cond in w.returns)}
    grew = True
    while grew:
        grew = False
        for _, _, name, w in bodies:
            if w.kind == "macro" and name not in early and any(c[0] in early for c in w.calls):
                early.add(name)
                grew = True

    found = []

    def line(text, at):
        return text.count("\n", 0, at) + 1

    for path, text, name, w in bodies:
        barrier_at = [at for callee, at, _, _ in w.calls if callee in holders]
        for callee, at, cond, _ in w.calls:
            if callee in holders and cond:
                found.append((path, line(text, at),
                              f"{name}: {callee}() (a barrier) on a conditional path"))
        exits = [(at, cond) for at, cond in w.returns]
        exits += [(at, True) for callee, at, _, _ in w.calls if callee in early]
        for at, cond in exits:
            if cond and any(b > at for b in barrier_at):
                found.append((path, line(text, at),
                              f"{name}: conditional return before a barrier"))
        for at, cond, frame in w.breaks:
            if cond and any(c[0] in holders for c in frame.get("calls", [])):
                found.append((path, line(text, at),
                              f"{name}: conditional break/continue in a loop with a barrier"))
    return sorted(set(found))


SELF_TEST = {
    "bad_if.cl": ("__kernel void k(int renorm) {\n int a = 0;\n if (renorm) {\n"
                  "  barrier(CLK_GLOBAL_MEM_FENCE);\n }\n}\n", 1),
    "bad_else.cl": ("__kernel void k(int r) {\n if (r) { r = 1; } else\n"
                    "  barrier(CLK_LOCAL_MEM_FENCE);\n}\n", 1),
    "bad_callee.cl": ("inline void tree(__local float *a) {\n for (int s = 1; s < 8; s <<= 1) {\n"
                      "  barrier(CLK_LOCAL_MEM_FENCE);\n }\n}\n"
                      "__kernel void k(__local float *a) {\n if (get_local_id(0) < 4)\n"
                      "  tree(a);\n}\n", 1),
    "bad_macro_return.cl": ("#define ITEM() \\\n  const ulong b = get_global_id(0); \\\n"
                            "  if (b >= 4) \\\n    return\n"
                            "__kernel void k(void) {\n ITEM();\n barrier(CLK_LOCAL_MEM_FENCE);\n}\n", 1),
    "bad_break.cl": ("__kernel void k(int n) {\n for (int i = 0; i < 8; ++i) {\n"
                     "  if (i == n)\n   break;\n  barrier(CLK_LOCAL_MEM_FENCE);\n }\n}\n", 1),
    "bad_ternary.cl": ("inline int b(void) { barrier(CLK_LOCAL_MEM_FENCE); return 1; }\n"
                       "__kernel void k(int r, __global int *o) {\n o[0] = r ? b() : 0;\n}\n", 1),
    "good.cl": ("#define WALK(n) \\\n do { \\\n  for (int i_ = 0; i_ < (n); ++i_) { \\\n"
                "   if (get_local_id(0) < 4) \\\n    x += 1; \\\n"
                "   barrier(CLK_LOCAL_MEM_FENCE); \\\n  } \\\n } while (0)\n"
                "__kernel void k(int n, __global int *o) {\n int x = 0;\n WALK(n);\n"
                " barrier(CLK_GLOBAL_MEM_FENCE);\n if (get_local_id(0) == 0)\n  o[0] = x;\n"
                " if (n > 3)\n  return;\n o[1] = x;\n}\n", 0),
}


def self_test():
    bad = 0
    for path, (text, want) in SELF_TEST.items():
        got = lint({path: text})
        if len(got) != want:
            print(f"self-test {path}: {len(got)} findings, expected {want}: {got}")
            bad += 1
    print(f"lint_barriers self-test: {len(SELF_TEST) - bad} of {len(SELF_TEST)} snippets as expected")
    return 1 if bad else 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    if not argv:
        print(__doc__)
        return 2
    sources = {p: open(p, encoding="utf-8").read() for p in argv}
    found = lint(sources)
    for path, ln, what in found:
        print(f"{path}:{ln}: {what}")
    print(f"lint_barriers: {len(sources)} files, {len(found)} findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
