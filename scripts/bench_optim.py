"""Step time of nntrain.optim.SGD (momentum) against torch.optim.SGD(foreach=True).

    python scripts/bench_optim.py            # 10 M parameters, median of 30 timed steps after 5 warm-up steps
    python scripts/bench_optim.py --params 1e6 --repeats 30

The model is a stack of square layers' weights and biases (10 M float32 numbers by default), the
gradients are fixed random tensors, so the time measured is the optimizer step alone. The goal of
chapter 2: our step takes at most 1.5× torch's foreach step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nntrain.optim import SGD

TARGET_RATIO = 1.5


def make_params(n_params: int, width: int = 1000, seed: int = 0) -> list[torch.Tensor]:
    """Weights width×width and biases of width, enough layers to hold about ``n_params`` numbers."""
    g = torch.Generator().manual_seed(seed)
    layers = max(1, round(n_params / (width * width + width)))
    params = []
    for _ in range(layers):
        for shape in ((width, width), (width,)):
            p = torch.randn(shape, generator=g).requires_grad_()
            p.grad = torch.randn(shape, generator=g)
            params.append(p)
    return params


def step_times(opt: torch.optim.Optimizer, repeats: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` optimizer steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        opt.step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def compare(n_params: int = 10_000_000, repeats: int = 30, warmup: int = 5, momentum: float = 0.9,
            lr: float = 1e-3) -> dict[str, float]:
    """Median step times (seconds) of ours and torch's, measured alternately to share the machine's noise."""
    ours_p = make_params(n_params)
    ref_p = make_params(n_params)
    ours = SGD(ours_p, lr=lr, momentum=momentum)
    ref = torch.optim.SGD(ref_p, lr=lr, momentum=momentum, foreach=True)
    t_ours, t_ref = [], []
    step_times(ours, 0, warmup)
    step_times(ref, 0, warmup)
    for _ in range(repeats):  # interleave, so that a burst of load on a shared machine hits both
        t_ours += step_times(ours, 1, 0)
        t_ref += step_times(ref, 1, 0)
    n = sum(p.numel() for p in ours_p)
    same = all(torch.equal(p, q) for p, q in zip(ours_p, ref_p))
    ours_s, ref_s = statistics.median(t_ours), statistics.median(t_ref)
    # the ratio is the median of the ratios of neighbouring steps: robust to load that comes and goes
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_ref))
    return {"params": n, "ours_s": ours_s, "torch_s": ref_s, "ratio": ratio, "identical": same}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1e7, help="number of parameters (default 1e7)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    r = compare(int(args.params), args.repeats, args.warmup)
    verdict = "OK" if r["ratio"] <= TARGET_RATIO else f"SLOWER than the {TARGET_RATIO}x target"
    print(f"SGD(momentum=0.9) step on {r['params'] / 1e6:.1f} M parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"  nntrain.optim.SGD             : {r['ours_s'] * 1e3:8.2f} ms (median of {args.repeats})")
    print(f"  torch.optim.SGD(foreach=True) : {r['torch_s'] * 1e3:8.2f} ms")
    print(f"  ratio ours/torch (median of step-by-step ratios): {r['ratio']:.2f}  ({verdict}); same parameters after the steps: {r['identical']}")
    return r


if __name__ == "__main__":
    main()
