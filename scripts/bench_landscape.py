"""Time of a 41×41 loss plane of a small CNN (chapter 9, «Проекции ландшафта»).

    python scripts/bench_landscape.py                    # a quick-mode CNN, both methods
    python scripts/bench_landscape.py --width 16 --depth 3 --examples 512 --methods loop

The network is ``nntrain.landscape.SmallCNN`` (BatchNorm, skip connections) trained briefly on the
8×8 digits; the plane is ``plane_losses`` with two filter-normalized directions. Both ways of
evaluating a batch of parameter vectors are timed (``vmap``: ``torch.func.functional_call`` under
``torch.vmap``; ``loop``: one ``functional_call`` per point), checked to agree, and compared with
the goal of issue 15: a 41×41 plane in quick mode under 20 s on the book's CPU machine.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from nntrain import data
from nntrain import landscape as ls

TARGET_SECONDS = 20.0


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8, help="channels (default 8, quick mode)")
    parser.add_argument("--depth", type=int, default=3,
                        help="3×3 blocks (default 3, as in the chapter)")
    parser.add_argument("--examples", type=int, default=256,
                        help="training examples the loss is averaged over (default 256)")
    parser.add_argument("--grid", type=int, default=41, help="points per axis (default 41)")
    parser.add_argument("--chunk", type=int, default=32, help="vmap chunk (default 32)")
    parser.add_argument("--methods", nargs="+", choices=list(ls.METHODS), default=list(ls.METHODS))
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    x, y = data.load("digits", "train", size=args.examples)
    net = ls.SmallCNN(args.width, args.depth)
    ls.fit(net, x, y, 200, 3e-3, 64, torch.Generator().manual_seed(0))
    net.eval()
    w = ls.flat_params(net)
    g = torch.Generator().manual_seed(1)
    d1, d2 = ls.random_direction(net, g), ls.random_direction(net, g)
    tt = torch.linspace(-1, 1, args.grid)
    print(f"SmallCNN(width={args.width}, depth={args.depth}), {len(w)} parameters, "
          f"{args.examples} examples, {args.grid}×{args.grid} plane; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("  wall time counts other processes on a shared machine; CPU time is this process's")
    seconds, planes = {}, {}
    for method in args.methods:
        start, cpu = time.perf_counter(), time.process_time()
        planes[method] = ls.plane_losses(net, F.cross_entropy, x, y, w, d1, d2, tt, tt,
                                         chunk=args.chunk, method=method)
        seconds[method] = time.perf_counter() - start
        cpu = time.process_time() - cpu
        verdict = "ok" if seconds[method] < TARGET_SECONDS else f"SLOWER than {TARGET_SECONDS:g} s"
        print(f"  {method:<5} wall {seconds[method]:7.2f} s, CPU {cpu:6.2f} s  "
              f"({1e3 * seconds[method] / args.grid ** 2:.1f} ms a point)  {verdict}")
    if len(planes) == 2:
        same = torch.allclose(planes["vmap"], planes["loop"], rtol=1e-4, atol=1e-5)
        print(f"  the two methods agree: {same}")
    return seconds


if __name__ == "__main__":
    main()
