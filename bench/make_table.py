#!/usr/bin/python3
"""make_table: turns one run_suite.sh results folder into table.md and plot.png.

    /usr/bin/python3 bench/make_table.py bench/results/<date>

Reads results.csv (clbn_bench, peer_torch and peer_onednn rows, CSV columns of
clbn_bench --csv; clbn's float32 rows are impl "clbn", its tuned ones
"clbn-tuned", its 16-bit ones "clbn-f16" and "clbn-bf16"), cl_copy.csv (the
minimal passes per shape), resnet50.csv (ResNet-50's BN shapes), stream_copy.csv,
empty_kernel.csv, startup.csv and machine.txt from the folder; writes table.md (and prints it) and, when gnuplot
is installed, plot.png with plot.gp and plot_*.dat beside it. Standard library only.
"""
import csv
import math
import os
import shutil
import subprocess
import sys
from collections import defaultdict

MODES = [("train", "train fwd"), ("infer", "inference"), ("backward", "backward")]
DTYPES16 = [("clbn-f16", "f16"), ("clbn-bf16", "bf16")]  # impl, label
LAYOUTS = ["nchw", "nhwc"]
BIG = 8e6  # bytes of x: the shapes the geometric mean is taken over
# ResNet-50's BN shapes at batch 32 and how many of its 53 BN layers have each
# (bench/run_suite.sh and tools/clbn_tune.c list the same)
RESNET50 = {"32x64x112x112": 1, "32x64x56x56": 6, "32x256x56x56": 4, "32x128x56x56": 1,
            "32x128x28x28": 7, "32x512x28x28": 5, "32x256x28x28": 1, "32x256x14x14": 11,
            "32x1024x14x14": 7, "32x512x14x14": 1, "32x512x7x7": 5, "32x2048x7x7": 4}
# issue 15's targets
BOUND_BIGGEST = 1.10  # tuned / bound on the largest shape
BOUND_BIG = 1.25      # tuned / bound on the other shapes of 8 MB or more
UNTUNED = 1.30        # untuned / tuned, every case
GEOMEAN_PEER = 0.60   # geometric mean tuned / faster peer
FLOOR = 1.30          # 8x32x16x16 / empty-kernel floor for its kernel count
HALF = 0.60           # float16 / float32 on the shapes of 8 MB or more
SMALL = 1e6  # bytes of x: the shapes the floor is shown beside


def f32_bytes(r):
    """Bytes of x in float32 for a results row (n, c, s columns)."""
    return 4.0 * int(r["n"]) * int(r["c"]) * int(r["s"])


def read_csv(path):
    """Rows of a CSV file as dicts, skipping repeated header lines."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        first = reader.fieldnames[0] if reader.fieldnames else None
        return [r for r in reader if first and r.get(first) != first]


def fnum(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def median(v):
    v = sorted(v)
    if not v:
        return None
    k = len(v) // 2
    return v[k] if len(v) % 2 else 0.5 * (v[k - 1] + v[k])


def geomean(v):
    v = [x for x in v if x and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def fmt_ms(x):
    if x is None:
        return "-"
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    if x >= 1:
        return "%.2f" % x
    return "%.3f" % x


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    res, shapes, spread = aggregate(read_csv(os.path.join(out, "results.csv")))
    main_tables(out, res, shapes, spread)


def aggregate(rows):
    """One row per configuration (impl, shape, layout, mode): the median over
    the rounds; the shapes in order; the configurations whose rounds differ."""
    groups = defaultdict(list)
    shapes = []
    for r in rows:
        groups[(r["impl"], r["shape"], r["layout"], r["mode"])].append(r)
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    res = {}
    spread = []  # (key, slowest round / fastest round)
    for key, rs in groups.items():
        meds = [fnum(r["median_ms"]) for r in rs if fnum(r["median_ms"])]
        if not meds:
            continue
        agg = dict(rs[0])
        m = median(meds)
        agg["median_ms"] = "%.4f" % m
        agg["min_ms"] = "%.4f" % min(fnum(r["min_ms"]) for r in rs)
        agg["gbps"] = "%.3f" % (float(agg["bytes"]) / m / 1e6)
        cores = [fnum(r["cores"]) for r in rs if fnum(r["cores"]) is not None]
        agg["cores"] = "%.2f" % median(cores) if cores else "-"
        verdicts = [r["verify"] for r in rs if r["verify"] not in ("-", "")]
        agg["verify"] = "-" if not verdicts else ("ok" if all(v == "ok" for v in verdicts) else "FAILED")
        agg["rounds"] = len(meds)
        # clbn_bench's last column (runs from 2026-12-07 on): a digest of the
        # plan the calls ran, kept where every round ran the same one
        digests = {r.get("plan") for r in rs}
        agg["plan"] = digests.pop() if len(digests) == 1 else None
        res[key] = agg
        if len(meds) > 1 and max(meds) / min(meds) > 1.25:
            spread.append((key, max(meds) / min(meds)))
    return res, shapes, spread


def main_tables(out, res, shapes, spread):
    bw = None
    for r in read_csv(os.path.join(out, "stream_copy.csv")):
        if r["kind"] == "copy":
            bw = fnum(r["best_gbps"])
    floors = defaultdict(list)
    for r in read_csv(os.path.join(out, "empty_kernel.csv")):
        floors[int(r["kernels"])].append(float(r["median_ms"]))
    floor = {k: median(v) for k, v in floors.items()}
    startup = defaultdict(list)
    for r in read_csv(os.path.join(out, "startup.csv")):
        startup[r["kind"]].append(r)
    machine = ""
    if os.path.exists(os.path.join(out, "machine.txt")):
        with open(os.path.join(out, "machine.txt")) as f:
            machine = f.read().strip()

    def ms(impl, shape, layout, mode):
        r = res.get((impl, shape, layout, mode))
        return fnum(r["median_ms"]) if r else None

    lines = []
    add = lines.append
    add("# clbn benchmark: %s" % os.path.basename(os.path.normpath(out)))
    add("")
    add("```")
    add(machine)
    add("copy bw:  " + ("%.1f GB/s (stream_copy, 2 threads, bytes read + written)" % bw if bw else "not measured"))
    add("```")
    add("")
    rounds = max((r["rounds"] for r in res.values()), default=0)
    add("Median wall time per call in ms (enqueue + wait, after warm-up; lower is better), "
        "the median over %d round%s of the suite. " % (rounds, "s" if rounds != 1 else "") +
        "PyTorch and oneDNN run on the CPU with 2 threads, clbn on PoCL's CPU device. "
        "`clbn / best` is clbn's time over the faster peer in the same layout (> 1: clbn is slower; "
        "**bold** when above 1.10). GB/s is clbn's effective bandwidth from the minimum traffic "
        "(forward: x read once + y written once; backward: x and dy read once + dx written once), "
        "`% copy` that over the copy bandwidth below; tensors that stay in the caches between calls "
        "can exceed 100%. `floor` is the empty-kernel floor for as many dependent kernels as the clbn call "
        "enqueues (`k`), shown beside shapes under 1 MB. oneDNN nChw8c is its blocked layout, "
        "for information (not in the ratio).")
    add("")
    add("| shape | MB | layout | mode | clbn | PyTorch | oneDNN | clbn / best | clbn GB/s | % copy | floor (k) | oneDNN nChw8c | verify |")
    add("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios = []  # (shape, layout, mode, ratio, ratio_torch, ratio_onednn, big)
    for shape in shapes:
        any_row = next((r for k, r in res.items() if k[1] == shape), None)
        n, c, s = int(any_row["n"]), int(any_row["c"]), int(any_row["s"])
        tbytes = 4.0 * n * c * s
        first = True
        for layout in LAYOUTS:
            for mode, mode_name in MODES:
                cl = res.get(("clbn", shape, layout, mode))
                t_cl = ms("clbn", shape, layout, mode)
                t_to = ms("torch", shape, layout, mode)
                t_dn = ms("onednn", shape, layout, mode)
                t_b8 = ms("onednn", shape, "nChw8c", mode) if layout == "nchw" else None
                peers = [t for t in (t_to, t_dn) if t]
                best = min(peers) if peers else None
                ratio = t_cl / best if (t_cl and best) else None
                if ratio:
                    ratios.append((shape, layout, mode, ratio,
                                   t_cl / t_to if t_to else None, t_cl / t_dn if t_dn else None,
                                   tbytes >= BIG))
                gbps = fnum(cl["gbps"]) if cl else None
                pct = 100.0 * gbps / bw if (gbps and bw) else None
                fl = "-"
                if cl and tbytes < SMALL:
                    k = cl.get("kernels", "")
                    if k.isdigit() and int(k) in floor:
                        fl = "%s (%s)" % (fmt_ms(floor[int(k)]), k)
                rs = "-" if ratio is None else ("**%.2f**" % ratio if ratio > 1.10 else "%.2f" % ratio)
                add("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    shape if first else "", ("%.1f" % (tbytes / 1e6)) if first else "",
                    layout, mode_name, fmt_ms(t_cl), fmt_ms(t_to), fmt_ms(t_dn), rs,
                    "%.1f" % gbps if gbps else "-", "%.0f%%" % pct if pct else "-", fl,
                    fmt_ms(t_b8) if layout == "nchw" else "", cl["verify"] if cl else "-"))
                first = False

    add("")
    add("## Geometric mean of clbn / best peer, shapes of 8 MB and more")
    add("")
    big = [r for r in ratios if r[6]]
    add("| subset | vs best peer | vs PyTorch | vs oneDNN | rows |")
    add("|---|---:|---:|---:|---:|")

    def gm_row(name, sel):
        g = geomean([r[3] for r in sel])
        gt = geomean([r[4] for r in sel if r[4]])
        gd = geomean([r[5] for r in sel if r[5]])
        f = lambda x: "%.2f" % x if x else "-"
        add("| %s | %s | %s | %s | %d |" % (name, f(g), f(gt), f(gd), len(sel)))

    gm_row("all", big)
    for mode, mode_name in MODES:
        gm_row(mode_name, [r for r in big if r[2] == mode])
    for layout in LAYOUTS:
        gm_row(layout, [r for r in big if r[1] == layout])
    add("")
    losses = sorted([r for r in ratios if r[3] > 1.10], key=lambda r: -r[3])
    if losses:
        add("Where clbn is more than 10% slower than the faster peer: " + "; ".join(
            "%s %s %s %.2fx" % (r[0], r[1], r[2], r[3]) for r in losses) + ".")
        add("")

    bounds = read_bounds(os.path.join(out, "cl_copy.csv"))
    table_bounds(add, res, shapes, ms, bounds, floor)
    table16(add, res, shapes, ms, bounds)
    table_resnet(add, aggregate(read_csv(os.path.join(out, "resnet50.csv")))[0])

    if spread:
        spread.sort(key=lambda e: -e[1])
        add("%d of %d configurations have round medians more than 25%% apart (the machine is shared; "
            "the table shows the median round). Widest: " % (len(spread), len(res)) + "; ".join(
                "%s %s %s %s %.2fx" % (k[0], k[1], k[2], k[3], x) for k, x in spread[:10]) + ".")
        add("")
    add("## Limits and start-up")
    add("")
    add("- Copy bandwidth (stream_copy: b[i] = a[i], 2 threads, 2 x 256 MiB, best of 10, bytes read + written): "
        + ("%.1f GB/s" % bw if bw else "not measured"))
    if floor:
        add("- Empty-kernel floor (k dependent empty kernels + clFinish, median of 200, middle of %d runs): %s"
            % (max(len(v) for v in floors.values()),
               ", ".join("%d: %.0f us" % (k, 1e3 * floor[k]) for k in sorted(floor))))
    for kind, label in (("cold", "cold (empty PoCL cache)"), ("warm", "warm (kernels cached by PoCL)")):
        rs = startup.get(kind)
        if not rs:
            continue
        def med(col):
            return median([float(r[col]) for r in rs])
        add("- Start-up %s, %s %s %s, median of %d: create %.0f ms, prepare %.0f ms, first call %.0f ms, "
            "**create to first result %.0f ms** (buffer setup %.0f ms not included)"
            % (label, rs[0]["shape"], rs[0]["layout"], rs[0]["mode"], len(rs), med("create_ms"),
               med("prepare_ms"), med("first_call_ms"), med("total_ms") - med("buffers_ms"),
               med("buffers_ms")))
    cores = [fnum(r["cores"]) for k, r in res.items() if k[0] == "clbn" and fnum(r["cores"])]
    if cores:
        add("- clbn process CPU time / wall time over the timed calls: median %.2f, min %.2f cores busy"
            % (median(cores), min(cores)))
    add("")

    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    plot(out, res, shapes, bw)


def read_bounds(path):
    """cl_copy.csv -> {shape: {pattern: ms}}: each variant's median over the
    rounds, then the fastest variant."""
    runs = defaultdict(list)
    for r in read_csv(path):
        t = fnum(r["median_ms"])
        if t is not None:
            runs[(r["shape"], r["pattern"], r["prefetch"], r["stream"])].append(t)
    b = defaultdict(dict)
    for (shape, pattern, _, _), ts in runs.items():
        t = median(ts)
        cur = b[shape].get(pattern)
        b[shape][pattern] = t if cur is None else min(cur, t)
    return b


def mode_bound(bounds, shape, mode):
    """The fastest a mode can be from the minimal passes: inference = copy,
    training forward = read + copy, backward = read2 + axpy."""
    p = bounds.get(shape, {})
    need = {"infer": ["copy"], "train": ["read", "copy"], "backward": ["read2", "axpy"]}[mode]
    return sum(p[k] for k in need) if all(k in p for k in need) else None


def chain_bound(bounds, shape, mode):
    """The same mode's minimal passes enqueued back to back in one call
    (cl_copy's read+copy, read2+axpy; inference: copy): what a two-pass call
    can reach where the isolated passes read a cache-sized tensor from the
    cache. None where the run has no such pattern (runs before 2026-12-07;
    table_bounds shows the chain columns only where the training pair is)."""
    k = {"infer": "copy", "train": "read+copy", "backward": "read2+axpy"}[mode]
    return bounds.get(shape, {}).get(k)


def table_bounds(add, res, shapes, ms, bounds, floor):
    """clbn untuned and tuned against each mode's bound and the faster peer,
    with issue 15's targets."""
    if not bounds and not any(k[0] == "clbn-tuned" for k in res):
        return
    chains = any(chain_bound(bounds, s, "train") for s in shapes)
    add("## clbn against the device's own limit, untuned and tuned")
    add("")
    add("`bound`: the fastest minimal OpenCL passes over the same float32 tensor in this run "
        "(bench/cl_copy run right before clbn on that shape in each round: plain, with prefetch, with "
        "prefetch and streaming stores; each variant's median over the rounds, then the fastest): inference = copy, training forward = read + copy, backward = read2 + axpy. "
        "`tuned`: plans tuned by clbn_plan_tune in round 1 (clbn_bench --tune). `peer`: the faster "
        "of PyTorch and oneDNN (nchw/nhwc).%s Targets (issue 15): tuned / bound <= %.2f on the largest "
        "shape and <= %.2f on the other shapes of 8 MB or more (the channel-resident path may beat "
        "the bound where a channel fits the cache); untuned / tuned <= %.2f; tuned / peer <= 1; "
        "**bold**: a target missed." % (
            " `chain`: the mode's minimal passes enqueued back to back in one call, as clbn's "
            "passes are (cl_copy read+copy, read2+axpy; the fastest variant): a tensor that fits "
            "the last-level cache is read from there by a pass timed alone, so the bound's sum "
            "can be below what any two passes over it take." if chains else "",
            BOUND_BIGGEST, BOUND_BIG, UNTUNED))
    add("")
    add("| shape | MB | layout | mode | bound | untuned | / bound | tuned | / bound | untuned / tuned | peer | tuned / peer |"
        + (" chain | chain / bound | tuned / chain |" if chains else ""))
    add("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if chains else ""))
    chain_miss = []  # bound misses whose chained minimal passes miss the limit too
    same_plan = []  # untuned / tuned where both runs ran one plan (the same digest)
    chain_ratios = []  # tuned / chain, 8 MB or more
    big_sizes = []
    for shape in shapes:
        r0 = next((r for k, r in res.items() if k[1] == shape and k[0] == "clbn"), None)
        if r0:
            big_sizes.append(f32_bytes(r0))
    biggest = max(big_sizes) if big_sizes else 0
    miss = defaultdict(int)
    total = defaultdict(int)
    peer_ratios = []
    peer_below = []  # peer misses where the peer beats a bare one-kernel copy
    f = lambda x, bad=False: "-" if x is None else ("**%.2f**" % x if bad else "%.2f" % x)
    for shape in shapes:
        r0 = next((r for k, r in res.items() if k[1] == shape and k[0] == "clbn"), None)
        if not r0:
            continue
        tbytes = f32_bytes(r0)
        limit = BOUND_BIGGEST if tbytes == biggest else BOUND_BIG if tbytes >= BIG else None
        first = True
        for layout in LAYOUTS:
            for mode, mode_name in MODES:
                if ("clbn", shape, layout, mode) not in res:
                    continue
                b = mode_bound(bounds, shape, mode)
                tu, tt = ms("clbn", shape, layout, mode), ms("clbn-tuned", shape, layout, mode)
                peers = [t for t in (ms("torch", shape, layout, mode), ms("onednn", shape, layout, mode)) if t]
                peer = min(peers) if peers else None
                ub = tu / b if (tu and b) else None
                tb = tt / b if (tt and b) else None
                ut = tu / tt if (tu and tt) else None
                tp = tt / peer if (tt and peer) else None
                cb = chain_bound(bounds, shape, mode)
                cbb = cb / b if (cb and b) else None
                tc = tt / cb if (tt and cb) else None
                if limit and tb is not None:
                    total["bound"] += 1
                    miss["bound"] += tb > limit
                    if tb > limit and cbb is not None and cbb > limit:
                        chain_miss.append("%s %s %s (chain / bound %.2f, tuned / chain %.2f)" % (
                            shape, layout, mode_name, cbb, tc))
                if tbytes >= BIG and tc is not None:
                    chain_ratios.append(tc)
                digest = res.get(("clbn", shape, layout, mode), {}).get("plan")
                same = digest not in (None, "", "-") and \
                    res.get(("clbn-tuned", shape, layout, mode), {}).get("plan") == digest
                if ut is not None:
                    total["untuned"] += 1
                    miss["untuned"] += ut > UNTUNED
                    if same:
                        same_plan.append(ut)
                if tp is not None:
                    total["peer"] += 1
                    miss["peer"] += tp > 1.0
                    copy = bounds.get(shape, {}).get("copy")
                    if tp > 1.0 and copy and peer < copy:
                        peer_below.append("%s %s %s (peer %s, copy %s ms)" % (
                            shape, layout, mode_name, fmt_ms(peer), fmt_ms(copy)))
                    if tbytes >= BIG:
                        peer_ratios.append(tp)
                add("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    shape if first else "", "%.1f" % (tbytes / 1e6) if first else "", layout, mode_name,
                    fmt_ms(b), fmt_ms(tu), f(ub), fmt_ms(tt), f(tb, bool(limit and tb and tb > limit)),
                    f(ut, bool(ut and ut > UNTUNED)) + (" (=)" if same and ut is not None else ""),
                    fmt_ms(peer), f(tp, bool(tp and tp > 1.0)))
                    + (" %s | %s | %s |" % (fmt_ms(cb), f(cbb), f(tc)) if chains else ""))
                first = False
    add("")
    gm = geomean(peer_ratios)
    add("Targets: tuned within the bound's limit in %d of %d cases of 8 MB or more; untuned within "
        "%.2fx of tuned in %d of %d; tuned no slower than the faster peer in %d of %d; geometric mean "
        "tuned / faster peer over the shapes of 8 MB or more %s (target <= %.2f)." % (
            total["bound"] - miss["bound"], total["bound"], UNTUNED, total["untuned"] - miss["untuned"],
            total["untuned"], total["peer"] - miss["peer"], total["peer"],
            "%.2f" % gm if gm else "-", GEOMEAN_PEER))
    add("")
    if same_plan:
        add("(=): the tuned plan is the untuned one (the same kernels and sizes: clbn_bench's plan "
            "digest), so there untuned / tuned is two processes running one plan, the noise between "
            "processes: %.2f-%.2f over these %d of %d cases." % (
                min(same_plan), max(same_plan), len(same_plan), total["untuned"]))
        add("")
    if chains and chain_ratios:
        add("Chained minimal passes: of the %d cases beyond the bound's limit, %d have the mode's "
            "minimal passes back to back (`chain`) beyond it too, so that no call of as many passes "
            "reaches it on this device%s. Tuned / chain over the cases of 8 MB or more: %.2f-%.2f, "
            "geometric mean %.2f." % (
                miss["bound"], len(chain_miss), ": " + "; ".join(chain_miss) if chain_miss else "",
                min(chain_ratios), max(chain_ratios), geomean(chain_ratios)))
        add("")
    if peer_below:
        add("Of the cases slower than the faster peer, %d are ones where the peer is faster than a "
            "bare one-kernel copy of the tensor on this device (cl_copy's copy, the fastest variant: "
            "one launch that reads x and writes y, less than any mode's call does), so that no "
            "OpenCL call reaches it: %s." % (len(peer_below), "; ".join(peer_below)))
        add("")
    # the small case against PoCL's floor for as many kernels
    small = []
    for shape in shapes:
        for impl in ("clbn", "clbn-tuned"):
            for layout in LAYOUTS:
                for mode, mode_name in MODES:
                    r = res.get((impl, shape, layout, mode))
                    if not r or f32_bytes(r) >= SMALL:
                        continue
                    k = r.get("kernels", "")
                    if k.isdigit() and int(k) in floor:
                        q = fnum(r["median_ms"]) / floor[int(k)]
                        small.append("%s %s %s %s: %s ms, %s kernel%s, floor %s ms, %s" % (
                            impl, shape, layout, mode_name, fmt_ms(fnum(r["median_ms"])), k,
                            "" if k == "1" else "s", fmt_ms(floor[int(k)]),
                            ("**%.2fx**" if q > FLOOR else "%.2fx") % q))
    if small:
        add("Shapes under 1 MB against the empty-kernel floor for the kernels each call enqueues "
            "(target <= %.2fx, **bold** when above):" % FLOOR)
        add("")
        for line in small:
            add("- " + line)
        add("")
        # what one kernel that merely copies the tensor takes, against the
        # same floor: above FLOOR, no kernel that reads x and writes y meets it
        copies = [(shape, bounds[shape]["copy"]) for shape in shapes
                  if "copy" in bounds.get(shape, {}) and 1 in floor and any(
                      k[1] == shape and f32_bytes(r) < SMALL
                      for k, r in res.items() if k[0] == "clbn")]
        if copies:
            add("The minimal one-kernel pass that reads x and writes y (cl_copy's copy, the fastest "
                "variant) against the same one-kernel floor: %s. Every mode reads x and writes y "
                "(or dx) at least once, so where this is above %.2fx the target is out of reach of "
                "any kernel on this device, not of clbn's alone." % (
                    "; ".join("%s %s ms, %.2fx the floor" % (sh, fmt_ms(t), t / floor[1]) for sh, t in copies),
                    FLOOR))
            add("")


def table_resnet(add, rn):
    """Sums over ResNet-50's 53 BN layers at batch 32: each distinct shape's
    median time x its count."""
    if not rn:
        return
    impls = [("clbn", "clbn untuned"), ("clbn-tuned", "clbn tuned"), ("torch", "PyTorch"),
             ("onednn", "oneDNN")]
    impls = [(i, n) for i, n in impls if any(k[0] == i for k in rn)]
    add("## ResNet-50 at batch 32: sums over its 53 BN layers")
    add("")
    add("ms per network pass: each of the %d distinct BN shapes timed once (median per call), times "
        "the number of layers that have it. Training = training forward + backward. `-`: a shape "
        "missing." % len(RESNET50))
    add("")
    present = [sh for sh in RESNET50 if any(k[1] == sh for k in rn)]
    if len(present) < len(RESNET50):
        add("**Only %d of the %d shapes were measured (%d of 53 layers): partial sums.**" % (
            len(present), len(RESNET50), sum(RESNET50[sh] for sh in present)))
        add("")
    add("| layout | pass |" + "".join(" %s |" % n for _, n in impls) + " clbn tuned / faster peer |")
    add("|---|---|" + "---:|" * len(impls) + "---:|")

    def total(impl, layout, modes):
        t = 0.0
        for shape in present:
            for mode in modes:
                r = rn.get((impl, shape, layout, mode))
                if not r or fnum(r["median_ms"]) is None:
                    return None
                t += RESNET50[shape] * fnum(r["median_ms"])
        return t

    for layout in LAYOUTS:
        for name, modes in (("inference", ["infer"]), ("training", ["train", "backward"])):
            sums = {i: total(i, layout, modes) for i, _ in impls}
            peers = [sums[i] for i in ("torch", "onednn") if sums.get(i)]
            q = sums.get("clbn-tuned") / min(peers) if (sums.get("clbn-tuned") and peers) else None
            add("| %s | %s |" % (layout, name) + "".join(" %s |" % fmt_ms(sums[i]) for i, _ in impls) +
                " %s |" % ("-" if q is None else "%.2f" % q))
    add("")


def table16(add, res, shapes, ms, bounds):
    """The "clbn in 16-bit types" table: float32, float16 and bfloat16 times of
    the same configuration and their ratios (nothing when no 16-bit rows), and
    the 16-bit types' own bound: the minimal passes over half the bytes
    (cl_copy.csv's "<shape>/2" rows) against the float32 time."""
    impls = [(impl, label) for impl, label in DTYPES16 if any(k[0] == impl for k in res)]
    if not impls:
        return
    add("## clbn in 16-bit types")
    add("")
    add("Median ms per call, as above, of clbn with x, y (dy, dx) stored in float32, float16 and "
        "bfloat16 (per-channel vectors and arithmetic stay float), and the 16-bit time over the "
        "float32 one. The 16-bit types move half the bytes, so on shapes that do not fit in the "
        "caches a ratio near 0.5 means the kernels stay bandwidth-bound; **bold** when 1.00 or "
        "more (no faster than float32). The 16-bit runs make fewer calls (see the command above). "
        "`verify`: the 16-bit runs against the double reference, with the tolerance of the "
        "output's rounding (2^-11 relative for float16, 2^-8 for bfloat16). `bound16`: the "
        "mode's minimal passes (as in the bound table) over half the float32 tensor's bytes, the "
        "fastest a 16-bit run could be, and `bound16 / f32` that over the float32 time: above "
        "%.2f, even a 16-bit kernel at its bound misses the float16 target." % HALF)
    # runs from 2026-12-06 (xeon-j) on also time cl_copy's stats16: a
    # statistics pass as stable as clbn's over the float16 tensor
    stats = any("stats16" in bounds.get(s + "/2", {}) for s in shapes)
    if stats:
        add("")
        add("`stable16 / f32` (training forward): cl_copy's stats16, a statistics pass over the "
            "float16 tensor as stable as clbn's (blocks of 64 values by an exact two-pass in "
            "registers, Chan merges) in the minimal geometry, plus the copy over half the bytes, "
            "over the float32 time. Where the 16-bit statistics are bound by their operations "
            "rather than their bytes, stats16 takes longer than read does over the same bytes; "
            "above %.2f, a training forward whose statistics are that stable misses the float16 "
            "target on this device." % HALF)
    add("")
    head = "| shape | MB (f32) | layout | mode | f32 |" + "".join(" %s |" % l for _, l in impls) + \
        "".join(" %s / f32 |" % l for _, l in impls) + "".join(" %s GB/s |" % l for _, l in impls) + \
        " bound16 | bound16 / f32 |" + (" stable16 / f32 |" if stats else "") + " verify |"
    add(head)
    add("|---|---:|---|---|---:|" + "---:|" * (3 * len(impls) + 2 + (1 if stats else 0)) + "---|")
    stable_bound = {}  # (shape, "train") -> ms
    half_bound = {}  # (shape, mode) -> ms
    gm = defaultdict(list)  # (label, mode or "all") -> ratios
    for shape in shapes:
        if not any((impl, shape) == k[:2] for impl, _ in impls for k in res):
            continue
        any_row = next(r for k, r in res.items() if k[1] == shape)
        mb = f32_bytes(any_row) / 1e6
        first = True
        for layout in LAYOUTS:
            for mode, mode_name in MODES:
                t32 = ms("clbn", shape, layout, mode)
                times = [ms(impl, shape, layout, mode) for impl, _ in impls]
                ratios = []
                for (impl, label), t in zip(impls, times):
                    q = t / t32 if (t and t32) else None
                    ratios.append(q)
                    if q:
                        gm[(label, "all")].append(q)
                        gm[(label, mode)].append(q)
                gbps = []
                verdicts = []
                for impl, _ in impls:
                    r = res.get((impl, shape, layout, mode))
                    g = fnum(r["gbps"]) if r else None
                    gbps.append("%.1f" % g if g else "-")
                    if r and r["verify"] != "-":
                        verdicts.append(r["verify"])
                verdict = "-" if not verdicts else ("ok" if all(v == "ok" for v in verdicts) else "FAILED")
                b16 = mode_bound(bounds, shape + "/2", mode)
                half_bound[(shape, mode)] = b16
                p16 = bounds.get(shape + "/2", {})
                st16 = p16["stats16"] + p16["copy"] if (mode == "train" and "stats16" in p16 and
                                                        "copy" in p16) else None
                stable_bound[(shape, mode)] = st16
                add("| %s | %s | %s | %s | %s |" % (shape if first else "", "%.1f" % mb if first else "",
                                                   layout, mode_name, fmt_ms(t32)) +
                    "".join(" %s |" % fmt_ms(t) for t in times) +
                    "".join(" %s |" % ("-" if q is None else ("**%.2f**" % q if q >= 1.0 else "%.2f" % q))
                            for q in ratios) +
                    "".join(" %s |" % g for g in gbps) +
                    " %s | %s |" % (fmt_ms(b16), "%.2f" % (b16 / t32) if (b16 and t32) else "-") +
                    (" %s |" % ("%.2f" % (st16 / t32) if (st16 and t32) else "-") if stats else "") +
                    " %s |" % verdict)
                first = False
    add("")
    f16 = [(k, fnum(r["median_ms"]) / ms("clbn", k[1], k[2], k[3])) for k, r in res.items()
           if k[0] == "clbn-f16" and fnum(r["median_ms"]) and ms("clbn", k[1], k[2], k[3])]
    if f16:
        over = [(k, q) for k, q in f16 if q > HALF]
        c3 = [(k, q) for k, q in f16 if k[2] == "nhwc" and int(res[k]["c"]) == 3]

        def b16(k):  # the case's 16-bit bound over its float32 time
            b = half_bound.get((k[1], k[3]))
            return b / ms("clbn", k[1], k[2], k[3]) if b else None
        out_of_reach = [k for k, _ in over if b16(k) and b16(k) > HALF]
        add("Targets: float16 at <= %.2fx float32's time in %d of %d cases%s; NHWC C = 3 in float16 "
            "no slower than float32: %s." % (
                HALF, len(f16) - len(over), len(f16),
                (" (above: " + "; ".join("%s %s %s %.2f%s" % (
                    k[1], k[2], k[3], q, " [bound16 %.2f]" % b16(k) if b16(k) else "")
                    for k, q in over) + ")") if over else "",
                ", ".join("%s %s %.2f%s" % (k[1], k[3], q, "" if q <= 1.0 else " (slower)") for k, q in c3)
                if c3 else "not measured"))
        add("")
        if over and any(b16(k) for k, _ in over):
            add("Of the %d float16 cases above %.2f, %d have a 16-bit bound above %.2fx the float32 "
                "time (the minimal passes over half the bytes do not halve there, so no kernel "
                "reaches the target)%s; in the other %d the minimal passes do, and the gap is "
                "clbn's own." % (
                    len(over), HALF, len(out_of_reach), HALF,
                    ": " + ", ".join("%s %s %s" % k[1:] for k in out_of_reach) if out_of_reach else "",
                    len(over) - len(out_of_reach)))
            add("")

            def stable(k):  # the stable-statistics bound over the float32 time
                b = stable_bound.get((k[1], k[3]))
                return b / ms("clbn", k[1], k[2], k[3]) if b else None
            own = [k for k, _ in over if k not in out_of_reach]
            bound_by_ops = [k for k in own if stable(k) and stable(k) > HALF]
            if stats and own:
                add("Of those %d, %d %s training forward%s whose `stable16 / f32` is above %.2f (a "
                    "statistics pass as stable as clbn's is bound by its operations there, not its "
                    "bytes)%s; %d remain clbn's own%s." % (
                        len(own), len(bound_by_ops), "is a" if len(bound_by_ops) == 1 else "are",
                        "" if len(bound_by_ops) == 1 else "s", HALF,
                        ": " + ", ".join("%s %s %s" % k[1:] for k in bound_by_ops) if bound_by_ops else "",
                        len(own) - len(bound_by_ops),
                        ": " + ", ".join("%s %s %s" % k[1:] for k in own if k not in bound_by_ops)
                        if len(own) > len(bound_by_ops) else ""))
                add("")
    add("Geometric mean of the 16-bit time over the float32 time: " + "; ".join(
        "%s: %s" % (label, ", ".join(
            "%s %.2f (%d)" % (name, geomean(gm[(label, key)]), len(gm[(label, key)]))
            for key, name in [("all", "all")] + MODES if gm[(label, key)]))
        for _, label in impls) + ".")
    add("")


def plot(out, res, shapes, bw):
    """plot.png: effective GB/s per shape and layout, one panel per mode."""
    def gb(impl, shape, layout, mode):
        r = res.get((impl, shape, layout, mode))
        return "%.3f" % float(r["gbps"]) if r and fnum(r["gbps"]) else "-"

    for mode, _ in MODES:
        with open(os.path.join(out, "plot_%s.dat" % mode), "w") as f:
            f.write("# label clbn torch onednn onednn_nChw8c\n")
            for shape in shapes:
                for layout in LAYOUTS:
                    f.write('"%s %s" %s %s %s %s\n' % (
                        shape, layout, gb("clbn", shape, layout, mode), gb("torch", shape, layout, mode),
                        gb("onednn", shape, layout, mode),
                        gb("onednn", shape, "nChw8c", mode) if layout == "nchw" else "-"))
    ymax = 0.0
    for r in res.values():
        g = fnum(r["gbps"])
        if g:
            ymax = max(ymax, g)
    ymax = max(ymax, bw or 0) * 1.1 or 10
    titles = {"train": "training forward", "infer": "inference forward", "backward": "backward"}
    gp = ["set terminal pngcairo size 1500,1500 font 'sans,10'",
          "set output '%s'" % os.path.join(out, "plot.png"),
          "set datafile missing '-'",
          "set style data histograms",
          "set style histogram clustered gap 1",
          "set style fill solid 0.85 border -1",
          "set boxwidth 0.9",
          "set grid ytics",
          "set yrange [0:%g]" % ymax,
          "set ylabel 'effective GB/s (minimum traffic / median time)'",
          "set xtics rotate by 30 right font 'sans,9'",
          "set xrange [-0.7:%g]" % (2 * len(shapes) - 0.3),
          "set bmargin 7",
          "set key top left horizontal",
          "set multiplot layout 3,1 title 'clbn (PoCL CPU) vs PyTorch and oneDNN (2 threads): "
          "effective bandwidth; line = copy bandwidth%s'" % (" %.1f GB/s" % bw if bw else "")]
    for mode, _ in MODES:
        d = os.path.join(out, "plot_%s.dat" % mode)
        gp.append("set title '%s'" % titles[mode])
        line = (", %g with lines lw 2 lc rgb 'black' title 'copy bandwidth'" % bw) if bw else ""
        gp.append("plot '%s' using 2:xtic(1) title 'clbn' lc rgb '#d62728', "
                  "'' using 3 title 'PyTorch' lc rgb '#1f77b4', "
                  "'' using 4 title 'oneDNN' lc rgb '#2ca02c', "
                  "'' using 5 title 'oneDNN nChw8c' lc rgb '#98df8a'%s" % (d, line))
    gp.append("unset multiplot")
    with open(os.path.join(out, "plot.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    if not shutil.which("gnuplot"):
        print("make_table: gnuplot not found (apt-get install gnuplot-nox): no plot.png", file=sys.stderr)
        return
    r = subprocess.run(["gnuplot", os.path.join(out, "plot.gp")], capture_output=True, text=True)
    if r.returncode != 0:
        print("make_table: gnuplot failed:\n" + r.stderr, file=sys.stderr)


if __name__ == "__main__":
    main()
