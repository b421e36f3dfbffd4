"""Benchmark of chapter 8: Newton–Schulz (5 steps) against the SVD, and against the matmul rate.

    python scripts/bench_muon.py            # 256…2048, square and 1:4 rectangular
    python scripts/bench_muon.py --small    # 256 and 512 only (a few seconds)

For every shape it prints the median times of Newton–Schulz and of ``torch.linalg.svd`` and the
FLOP rate that Newton–Schulz achieves (its matmul FLOPs, ``nntrain.optim.newton_schulz_flops``)
as a fraction of a plain matmul's rate measured in the same run, on the same shapes. On a CPU the
iterations run in fp32 (bf16 matmuls have no hardware support there and are much slower: timed
once on the smallest shape); on a GPU they run in bf16, as in Jordan's Muon, and the matmul rate
is bf16 too. Timings are medians, interleaved, because a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from nntrain.optim import newton_schulz, newton_schulz_flops

SQUARE = (256, 512, 1024, 2048)
RECT = ((256, 1024), (512, 2048))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn: Callable[[], object], dev: torch.device) -> float:
    _sync(dev)
    start = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - start


def medians(fns: dict[str, Callable[[], object]], dev: torch.device, repeats: int) -> dict[str, float]:
    """Median time of each function, calls interleaved so that load on the machine hits all alike."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_time(fn, dev))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_shape(rows: int, cols: int, dev: torch.device, dtype: torch.dtype, steps: int = 5) -> dict[str, float]:
    """Times of NS, SVD and the matmul NS is made of; the achieved NS rate as a share of the matmul rate."""
    gen = torch.Generator(device=dev).manual_seed(0)
    g = torch.randn(rows, cols, device=dev, generator=gen)
    n, m = sorted((rows, cols))
    x = torch.randn(n, m, device=dev, dtype=dtype, generator=gen)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    flops = newton_schulz_flops(rows, cols, steps)
    # NS = per step one X X^T (2n^2 m), one A A (2n^3), one (n×n)(n×m) (2n^2 m): time the same products
    fns = {
        "ns": lambda: newton_schulz(g, steps, dtype=dtype),
        "mm": lambda: (x @ x.mT, a @ a, a @ x),
    }
    big = n * m >= 1024 * 2048
    t = medians(fns, dev, repeats=3 if big else 7)
    t["svd"] = medians({"svd": lambda: torch.linalg.svd(g, full_matrices=False)}, dev, repeats=1 if big else 3)["svd"]
    mm_flops = 4 * n * n * m + 2 * n**3
    t["ns_gflops"] = flops / t["ns"] / 1e9
    t["mm_gflops"] = mm_flops / t["mm"] / 1e9
    t["share"] = t["ns_gflops"] / t["mm_gflops"]
    t["speedup"] = t["svd"] / t["ns"]
    return t


def main(argv: list[str] | None = None) -> dict[tuple[int, int], dict[str, float]]:
    """Print the table (and return it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="only 256 and 512 (seconds)")
    args = parser.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dev.type == "cpu":
        torch.set_flush_denormal(True)
    shapes = [(s, s) for s in SQUARE] + list(RECT)
    if args.small:
        shapes = [s for s in shapes if max(s) <= 512]
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"Newton–Schulz (5 steps, {str(dtype).replace('torch.', '')}) vs torch.linalg.svd (fp32) on {where}")
    print(f"{'shape':>11} {'NS, ms':>9} {'SVD, ms':>9} {'SVD/NS':>7} {'NS GFLOP/s':>11} {'mm GFLOP/s':>11} {'NS/mm':>6}")
    results = {}
    for rows, cols in shapes:
        r = bench_shape(rows, cols, dev, dtype)
        results[(rows, cols)] = r
        print(f"{rows:>5}×{cols:<5} {1e3 * r['ns']:9.1f} {1e3 * r['svd']:9.1f} {r['speedup']:7.1f} "
              f"{r['ns_gflops']:11.1f} {r['mm_gflops']:11.1f} {100 * r['share']:5.0f}%", flush=True)
    if dev.type == "cpu":
        g = torch.randn(256, 256)
        t = medians({"fp32": lambda: newton_schulz(g), "bf16": lambda: newton_schulz(g, dtype=torch.bfloat16)}, dev, 3)
        print(f"bf16 on this CPU: Newton–Schulz 256×256 takes {1e3 * t['bf16']:.1f} ms vs {1e3 * t['fp32']:.1f} ms "
              f"in fp32 ({t['bf16'] / t['fp32']:.1f}× slower: no bf16 matrix units)")
    return results


if __name__ == "__main__":
    main()
