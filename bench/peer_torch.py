#!/usr/bin/python3
"""peer_torch: the same measurement as clbn_bench, for PyTorch's CPU batch norm.

A peer for the benchmark only. Uses Debian's python3-torch (run it with
/usr/bin/python3: another python3 on PATH may lack torch):

    /usr/bin/python3 bench/peer_torch.py --shape 32x64x56x56 --layouts nchw,nhwc \\
        --modes train,infer,backward --iters 100 --csv

- 2 threads (torch.set_num_threads(2); --threads to change).
- glibc is told to keep freed memory (GLIBC_TUNABLES mmap_max=0 and a huge
  trim threshold): every torch call allocates its output, and with glibc's
  defaults a large output is mmap'ed afresh and page-faulted on every call,
  which measures the kernel's page faults instead of batch norm. The script
  re-executes itself with that setting unless GLIBC_TUNABLES is already set or
  --no-tunables is given.
- train: nn.BatchNorm2d (BatchNorm1d for an (N, C) shape) in train(), under
  torch.no_grad() (the forward kernel with the running-statistics update,
  without building an autograd graph); infer: the module in eval(); backward:
  torch.ops.aten.native_batch_norm_backward with output_mask (True, True, True),
  i.e. grad input, weight and bias, from the statistics a training forward
  saved (only the backward is timed).
- nhwc is torch.channels_last. A shape NxCxS (not NxCxHxW) becomes (N, C, S, 1).
- Timing: wall clock per call (the CPU ops are synchronous), median and min;
  bytes are clbn_bench's minimum traffic; the CSV columns are clbn_bench's.
"""
import argparse
import os
import sys
import time

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def parse_shape(text):
    dims = [int(d) for d in text.lower().replace(",", "x").split("x")]
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError("shape must be NxC, NxCxS or NxCxHxW")
    return dims


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=parse_shape, required=True)
    ap.add_argument("--layouts", default="nchw,nhwc")
    ap.add_argument("--modes", default="train,infer,backward")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=0.0,
                    help="fewer iterations (at least 10) when --iters calls would take longer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", action="store_true")
    ap.add_argument("--no-header", action="store_true")
    ap.add_argument("--no-tunables", action="store_true",
                    help="do not re-execute with GLIBC_TUNABLES (measure glibc's default malloc)")
    args = ap.parse_args()

    if not args.no_tunables and "GLIBC_TUNABLES" not in os.environ:
        env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)

    try:
        import torch
    except ImportError:
        sys.exit("peer_torch: no torch for %s (apt-get install python3-torch; run with "
                 "/usr/bin/python3)" % sys.executable)
    torch.set_num_threads(args.threads)

    dims = args.shape
    n, c = dims[0], dims[1]
    s = 1
    for d in dims[2:]:
        s *= d
    shape_text = "x".join(str(d) for d in dims)
    if len(dims) == 2:
        tshape = (n, c)
    elif len(dims) == 4:
        tshape = tuple(dims)
    else:
        tshape = (n, c, s, 1)
    eps, momentum = 1e-5, 0.1

    if args.csv and not args.no_header:
        print("impl,shape,n,c,s,layout,mode,iters,median_ms,min_ms,bytes,gbps,pct_copy_bw,"
              "cores,kernels,verify")
    elif not args.csv:
        print("peer_torch: PyTorch %s, %d threads, GLIBC_TUNABLES=%s"
              % (torch.__version__, torch.get_num_threads(), os.environ.get("GLIBC_TUNABLES", "")))

    gen = torch.Generator().manual_seed(1)
    for layout in args.layouts.split(","):
        if layout not in ("nchw", "nhwc"):
            sys.exit("peer_torch: layout must be nchw or nhwc")
        fmt = torch.channels_last if (layout == "nhwc" and len(tshape) == 4) else torch.contiguous_format
        x = (torch.rand(tshape, generator=gen) * 2 - 1 + 0.5).contiguous(memory_format=fmt)
        bn = (torch.nn.BatchNorm1d(c) if len(tshape) == 2 else torch.nn.BatchNorm2d(c))
        with torch.no_grad():
            bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.bias.copy_(torch.rand(c, generator=gen) - 0.5)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        for mode in args.modes.split(","):
            if mode == "train":
                bn.train()
                def call():
                    with torch.no_grad():
                        return bn(x)
            elif mode == "infer":
                bn.eval()
                def call():
                    with torch.no_grad():
                        return bn(x)
            elif mode == "backward":
                dy = (torch.rand(tshape, generator=gen) * 2 - 1).contiguous(memory_format=fmt)
                w = bn.weight.detach()
                rm, rv = bn.running_mean.clone(), bn.running_var.clone()
                _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
                    x, w, bn.bias.detach(), rm, rv, True, momentum, eps)
                def call():
                    return torch.ops.aten.native_batch_norm_backward(
                        dy, x, w, rm, rv, save_mean, save_invstd, True, eps, [True, True, True])
            else:
                sys.exit("peer_torch: mode must be train, infer or backward")

            iters = args.iters
            times = []
            for _ in range(args.warmup):
                t0 = time.perf_counter()
                out = call()
                times.append(time.perf_counter() - t0)
                del out
            if args.warmup and args.max_seconds > 0:
                per = sorted(times)[len(times) // 2]
                if per * iters > args.max_seconds:
                    iters = max(min(10, iters), int(args.max_seconds / per))
            times = []
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                t0 = time.perf_counter()
                out = call()
                times.append(time.perf_counter() - t0)
                del out
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            times.sort()
            med = (times[iters // 2] if iters % 2 else 0.5 * (times[iters // 2 - 1] + times[iters // 2]))
            mn = times[0]
            nbytes = (3 if mode == "backward" else 2) * n * c * s * 4
            gbps = nbytes / med / 1e9
            if args.csv:
                print("torch,%s,%d,%d,%d,%s,%s,%d,%.4f,%.4f,%d,%.3f,-1,%.2f,-,-"
                      % (shape_text, n, c, s, layout, mode, iters, 1e3 * med, 1e3 * mn, nbytes,
                         gbps, cpu / wall))
            else:
                print("%s %s %s: %d calls, median %.4f ms, min %.4f ms, %.2f GB/s, %.2f cores busy"
                      % (shape_text, layout, mode, iters, 1e3 * med, 1e3 * mn, gbps, cpu / wall))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
