"""Step time of nntrain.optim.SGD (momentum) against torch.optim.SGD(foreach=True).

    python scripts/bench_optim.py            # 10 M parameters, median of 30 timed steps after 5 warm-up steps
    python scripts/bench_optim.py --params 1e6 --repeats 30

The measurement itself is ``nntrain.optim.sgd.compare_step_time`` (the sgd chapter glues its
result): fixed random gradients, so only the optimizer step is timed. The goal of chapter 2:
our step takes at most 1.5× torch's foreach step.
"""

from __future__ import annotations

import argparse

import torch

from nntrain.optim.sgd import compare_step_time

TARGET_RATIO = 1.5


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1e7, help="number of parameters (default 1e7)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    r = compare_step_time(int(args.params), args.repeats, args.warmup)
    verdict = "OK" if r["ratio"] <= TARGET_RATIO else f"SLOWER than the {TARGET_RATIO}x target"
    print(f"SGD(momentum=0.9) step on {r['params'] / 1e6:.1f} M parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"  nntrain.optim.SGD             : {r['ours_s'] * 1e3:8.2f} ms (median of {args.repeats})")
    print(f"  torch.optim.SGD(foreach=True) : {r['torch_s'] * 1e3:8.2f} ms")
    print(f"  ratio ours/torch (median of step-by-step ratios): {r['ratio']:.2f}  ({verdict}); "
          f"same parameters after the steps: {r['identical']}")
    return r


if __name__ == "__main__":
    main()
