"""Step time of nntrain.optim's wrappers against their torch.optim twins with foreach=True.

    python scripts/bench_optim.py                       # all five, 10 M parameters, median of 30 steps
    python scripts/bench_optim.py --params 1e6 --methods sgd adam

The measurement itself is ``nntrain.optim.compare_step_time`` (the sgd chapter glues its SGD
result): fixed random gradients, so only the optimizer step is timed, and the two optimizers'
steps alternate. The goal of chapter 2: our step takes at most 1.5× torch's foreach step.
"""

from __future__ import annotations

import argparse

import torch

from nntrain.optim import BENCH_METHODS, compare_step_time

TARGET_RATIO = 1.5

# the options each method is timed with (the usual ones: momentum for SGD, the defaults otherwise)
BENCH_OPTIONS: dict[str, dict] = {"sgd": {}, "adagrad": {}, "rmsprop": {}, "adam": {}, "adamw": {}}
LABELS = {"sgd": "SGD(momentum=0.9)", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1e7, help="number of parameters (default 1e7)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--methods", nargs="+", choices=list(BENCH_METHODS), default=list(BENCH_METHODS))
    args = parser.parse_args(argv)
    print(f"optimizer step on {args.params / 1e6:.1f} M float32 parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); median of {args.repeats} steps after {args.warmup} warm-up")
    print(f"  {'method':<18} {'ours, ms':>9} {'torch foreach, ms':>18} {'ratio':>6}  same result")
    results = {}
    for method in args.methods:
        r = compare_step_time(int(args.params), args.repeats, args.warmup, method=method, **BENCH_OPTIONS[method])
        verdict = "" if r["ratio"] <= TARGET_RATIO else f"  SLOWER than the {TARGET_RATIO}x target"
        print(f"  {LABELS[method]:<18} {r['ours_s'] * 1e3:9.2f} {r['torch_s'] * 1e3:18.2f} {r['ratio']:6.2f}  "
              f"{'bit-for-bit' if r['identical'] else 'max |diff| = %.1e' % r['max_abs_diff']}{verdict}")
        results[method] = r
    return results


if __name__ == "__main__":
    main()
