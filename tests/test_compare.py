"""nntrain.compare: the protocol of the Muon vs AdamW comparison (schedule, splits, intervals, grids)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nntrain import compare
from nntrain.models import mlp
from nntrain.optim import AdamW, Muon, split_muon_params


def test_warmup_cosine_shape():
    total = 100
    f = [compare.warmup_cosine(k, total, 0.1) for k in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)       # 10 warmup iterations up to 1
    assert all(a < b for a, b in zip(f[:9], f[1:10]))
    assert f[10] == pytest.approx(1.0)                                       # the cosine starts at 1
    assert all(a >= b for a, b in zip(f[10:], f[11:]))                       # and only decreases
    assert f[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))   # close to 0 at the end
    assert compare.warmup_cosine(0, 10, 0.0) == 1.0
    with pytest.raises(ValueError):
        compare.warmup_cosine(10, 10)
    with pytest.raises(ValueError):
        compare.warmup_cosine(0, 10, 1.0)


def test_t_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in [1, 2, 4, 9, 29]:
        assert compare.t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)
    x = [1.0, 2.0, 4.0, 3.0, 5.0]
    mean, half = compare.t_interval(x)
    assert mean == 3.0
    assert half == pytest.approx(stats.t.ppf(0.975, 4) * np.std(x, ddof=1) / math.sqrt(5), rel=1e-3)
    assert math.isnan(compare.t_interval([2.0])[1])
    with pytest.raises(ValueError):
        compare.t_interval([])


def test_at_edge():
    grid = [0.01, 0.02, 0.04, 0.08]
    assert compare.at_edge(grid, 0.01) and compare.at_edge(grid, 0.08)
    assert not compare.at_edge(grid, 0.02) and not compare.at_edge(grid, 0.04)


def _run(kind, lr, seed, val, test=0.0, wd=0.0, train_loss=(1.0,)):
    return compare.Run(kind, lr, wd, seed, np.array(train_loss), 0.0, {"val_loss": val, "test_loss": test})


def test_best_setting_uses_validation_and_paired_gap_uses_common_seeds():
    runs = [_run("adamw", 0.01, s, val=1.0 + s, test=0.0) for s in range(3)]
    runs += [_run("adamw", 0.02, s, val=0.5 + s, test=9.0) for s in range(3)]
    assert compare.best_setting(runs, "adamw") == (0.02, 0.0)        # chosen on val, whatever test says
    table = compare.summarize(runs, "val_loss")
    assert table[("adamw", 0.02, 0.0)][0] == pytest.approx(1.5) and table[("adamw", 0.02, 0.0)][2] == 3
    a = [_run("muon", 0.1, s, val=0.0, test=1.0 + 0.1 * s) for s in range(4)]
    b = [_run("adamw", 0.02, s, val=0.0, test=2.0 + 0.1 * s) for s in range(1, 5)]
    mean, half, n = compare.paired_gap(a, b, "test_loss")
    assert n == 3 and mean == pytest.approx(-1.0) and half == pytest.approx(0.0, abs=1e-12)
    tail = _run("adamw", 0.1, 0, 0.0, train_loss=np.r_[np.ones(90), np.zeros(10)])
    assert compare._value(tail, "tail") == 0.0
    with pytest.raises(KeyError):
        compare._value(tail, "accuracy")


def test_char_splits_are_disjoint_and_cover_whole_chunks():
    ids = torch.arange(10_000)
    sp = compare.char_splits(ids, chunk=500, fractions=(0.1, 0.1), seed=0)
    assert {k: len(v) for k, v in sp.items()} == {"train": 8000, "val": 1000, "test": 1000}
    sets = {k: set(v.tolist()) for k, v in sp.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert all(bool((v[1:] - v[:-1] > 0).all()) for v in sp.values())           # original order kept
    with pytest.raises(ValueError):
        compare.char_splits(ids[:1000], chunk=500)


def test_lm_loss_windows_stay_inside_chunks():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x, y):
            seen.append((x.clone(), y.clone()))
            return None, torch.tensor(0.5)

    stream = torch.arange(1024)
    assert compare.lm_loss(Recorder(), stream, ctx=64, chunk=512) == 0.5
    x, y = seen[0]
    assert x.shape == (14, 64) and torch.equal(y, x + 1)
    assert int(y.max()) <= 1023 and not any((row[0] < 512 <= row[-1]).item() for row in y)   # no window crosses


def _tiny_task(steps=30):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y = (x[:, 0] > 0).long()
    return compare.Task(
        build_model=lambda: mlp([8, 16, 16, 2]),
        batch=lambda g: (lambda i: (x[i], y[i]))(torch.randint(256, (32,), generator=g)),
        loss=lambda m, a, b: nn.functional.cross_entropy(m(a), b),
        evaluate=lambda m: compare.classification_metrics(m, {"val": (x[:64], y[:64])}),
        steps=steps,
        split=lambda m: split_muon_params(m, input_layer=True),
    )


def test_train_is_reproducible_and_seeds_differ():
    task = _tiny_task()
    a = compare.train(task, "adamw", 1e-2, seed=3)
    b = compare.train(task, "adamw", 1e-2, seed=3)
    c = compare.train(task, "adamw", 1e-2, seed=4)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert a.metrics == b.metrics and not np.array_equal(a.train_loss, c.train_loss)
    assert set(a.metrics) == {"val_loss", "val_acc"} and len(a.train_loss) == task.steps


def test_train_applies_the_schedule_to_both_muon_groups():
    task = _tiny_task(steps=20)
    seen = []
    orig = Muon.step

    def spy(self, closure=None):
        seen.append([g["lr"] for g in self.param_groups])
        return orig(self, closure)

    Muon.step = spy
    try:
        compare.train(task, "muon", 0.05, seed=0, aux_lr=1e-2, warmup=0.1)
    finally:
        Muon.step = orig
    factors = [compare.warmup_cosine(k, 20, 0.1) for k in range(20)]
    np.testing.assert_allclose([s[0] for s in seen], [0.05 * f for f in factors], rtol=1e-12)
    np.testing.assert_allclose([s[1] for s in seen], [1e-2 * f for f in factors], rtol=1e-12)


def test_make_optimizer_groups():
    model = mlp([8, 16, 16, 2])
    opt = compare.make_optimizer("muon", model, 0.02, 0.1, aux_lr=1e-3,
                                 split=lambda m: split_muon_params(m, input_layer=True))
    muon_group, adam_group = opt.param_groups
    assert [tuple(p.shape) for p in muon_group["params"]] == [(16, 16)]       # input layer and head on AdamW
    assert adam_group["lr"] == 1e-3 and adam_group["weight_decay"] == 0.1
    assert isinstance(compare.make_optimizer("adamw", model, 1e-3), AdamW)
    with pytest.raises(ValueError):
        compare.make_optimizer("muon", model, 0.02)
    with pytest.raises(ValueError):
        compare.make_optimizer("sgd", model, 0.02)
    with pytest.raises(TypeError):
        compare.make_optimizer("adamw", model, 1e-3, method="svd")


def test_constant_schedule_and_bad_schedule():
    task = _tiny_task(steps=5)
    compare.train(task, "adamw", 1e-2, seed=0, schedule="constant")
    with pytest.raises(ValueError):
        compare.train(task, "adamw", 1e-2, seed=0, schedule="step")


def test_sweep_covers_the_grid():
    runs = compare.sweep(_tiny_task(steps=3), "adamw", [1e-3, 1e-2], [0, 1], weight_decays=(0.0, 0.1), progress=False)
    assert sorted((r.lr, r.weight_decay, r.seed) for r in runs) == sorted(
        (lr, wd, s) for lr in [1e-3, 1e-2] for wd in [0.0, 0.1] for s in [0, 1])


def test_tune_and_report_chooses_on_validation_and_chains_the_aux_lr():
    task = _tiny_task(steps=10)
    comp = compare.tune_and_report(task, {"adamw": [1e-3, 1e-2], "muon": [0.01, 0.05]}, [0, 1], [5, 6],
                                   weight_decays=(0.0, 0.1), progress=False)
    assert comp.aux_lr == comp.lr["adamw"]
    for kind in ["adamw", "muon"]:
        assert (comp.lr[kind], 0.0) == compare.best_setting([r for r in comp.select if r.kind == kind], kind)
        final = comp.final(kind)
        assert sorted(r.seed for r in final) == [5, 6] and all(r.weight_decay == comp.weight_decay[kind] for r in final)
    assert len(comp.select) == 8 and len(comp.report) == 8
    with pytest.raises(ValueError):
        compare.tune_and_report(task, {"muon": [0.01]}, [0], [1], progress=False)


def test_plot_helpers_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [_run("adamw", lr, s, val=lr * 10 + s) for lr in [0.01, 0.02] for s in range(3)]
    fig, ax = plt.subplots()
    compare.plot_lr_curve(ax, runs, "adamw")
    compare.plot_training_curve(ax, [_run("adamw", 0.1, 0, 0.0, train_loss=np.linspace(1, 0, 50))], smooth=5)
    assert len(ax.lines) >= 2 and ax.get_xscale() == "log"
    plt.close(fig)


def test_table_lines_and_plot_study():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comp = compare.tune_and_report(_tiny_task(steps=12), {"adamw": [1e-3, 1e-2], "muon": [0.01, 0.05]},
                                   [0], [1, 2], weight_decays=(0.0,), progress=False)
    lines = compare.table_lines(comp, ["val_loss", "val_acc"], ["loss", "acc"])
    assert len(lines) == 3 and lines[1].split()[0] == "adamw" and "±" in lines[2]
    fig = compare.plot_study(comp, "val")
    assert len(fig.axes) == 2
    plt.close(fig)
    assert compare.value(comp.report[0], "tail") == compare._value(comp.report[0], "tail")


def test_sensitivity():
    runs = [_run("muon", lr, s, val=v + 0.01 * s) for lr, v in [(0.01, 3.0), (0.02, 1.0), (0.04, 2.0)]
            for s in range(3)]
    assert compare.sensitivity(runs, "muon") == pytest.approx(3.01 / 1.01)
    assert math.isnan(compare.sensitivity(runs[:6], "muon"))           # best at the edge


def test_geometric_grid_is_the_chapter_8_grid():
    # chapter 8 wrote its grids as [lo * 2**i for i in range(k)]
    for lo, k in [(5e-4, 6), (2.5e-3, 6), (1e-3, 5), (0.01, 5)]:
        assert compare.geometric_grid(lo, k) == [lo * 2**i for i in range(k)]
    assert compare.geometric_grid(1.0, 3, ratio=10) == [1.0, 10.0, 100.0]
    assert compare.geometric_grid(0.5, 1) == [0.5]


@pytest.mark.parametrize("args", [(0.0, 3), (-1e-3, 3), (math.inf, 3), (1e-3, 0), (1e-3, 2.0),
                                  (1e-3, 3, 1.0), (1e-3, 3, 0.5), (1e-3, 3, math.nan)])
def test_geometric_grid_rejects_bad_input(args):
    with pytest.raises(ValueError, match="start|n must|ratio"):
        compare.geometric_grid(*args)


def test_t_intervals_overlap_is_the_old_notebook_rule_off_ties():
    # chapter 9 (projections) used |m_a − m_b| < h_a + h_b; the package's intervals are closed,
    # so the two agree everywhere except at an exact tie, where the closed rule says "overlap"
    rng = np.random.default_rng(0)
    for _ in range(500):
        n_a, n_b = rng.integers(2, 6, size=2)
        a = rng.normal(0.0, 1.0, n_a) * rng.uniform(0.01, 1)
        b = rng.normal(rng.uniform(-3, 3), 1.0, n_b) * rng.uniform(0.01, 1)
        (ma, ha), (mb, hb) = compare.t_interval(a), compare.t_interval(b)
        if abs(ma - mb) != ha + hb:
            assert compare.t_intervals_overlap(a, b) == (abs(ma - mb) < ha + hb)
    assert compare.t_intervals_overlap([0.0, 1.0], [0.2, 0.9])
    assert not compare.t_intervals_overlap([0.0, 0.01, 0.02], [5.0, 5.01, 5.02])
    assert compare.t_intervals_overlap([1.0, 2.0], [3.0, 4.0]) == compare.t_intervals_overlap(
        [3.0, 4.0], [1.0, 2.0])


@pytest.mark.parametrize("first, second", [([1.0], [1.0, 2.0]), ([1.0, 2.0], []),
                                           ([1.0, math.nan], [1.0, 2.0])])
def test_t_intervals_overlap_rejects_samples_without_an_interval(first, second):
    with pytest.raises(ValueError, match="sample"):
        compare.t_intervals_overlap(first, second)


def test_random_batches_follow_the_generator_and_refuse_bad_input():
    import pytest
    import torch

    from nntrain.compare import random_batches

    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    batch = random_batches(x, y, 4)
    xb, yb = batch(torch.Generator().manual_seed(3))
    idx = torch.randint(10, (4,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            random_batches(x, y, bad)
    with pytest.raises(ValueError, match="rows"):
        random_batches(x, y[:9], 4)
