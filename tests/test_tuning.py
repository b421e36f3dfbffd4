"""Tests of nntrain.tuning: the learning-rate search, the bracket check, intervals and the table."""

import math

import numpy as np
import pytest
import torch

from nntrain import compare, optim, tuning


@pytest.fixture(scope="module")
def splits():
    from nntrain import data

    x, y = data.load("spirals", "train", seed=0, n=300)
    xt, yt = data.load("spirals", "test", seed=0, n=300)
    return {"dataset": "spirals", "train": (x[:200], y[:200]), "val": (x[200:], y[200:]),
            "test": (xt, yt)}


@pytest.fixture(scope="module")
def task(splits):
    return tuning.classification_task(splits, [16, 16], batch_size=16, steps=20)


def _available(name):
    return name not in ("lamb", "shampoo") or hasattr(optim, {"lamb": "LAMB", "shampoo": "Shampoo"}[name])


# --------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("name", tuning.OPTIMIZERS)
def test_every_optimizer_trains(task, name):
    if not _available(name):
        pytest.skip(f"nntrain.optim has no {name} yet")
    kw = {"aux_lr": 1e-2} if name == "muon" else {}
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "muon": 0.02,
          "lamb": 0.02, "shampoo": 0.01}.get(name, 1e-2)
    r = tuning.run(task, name, lr, seed=0, **kw)
    assert r.train_loss.shape == (20,) and np.isfinite(r.train_loss).all()
    assert r.final("val_loss") < r.metrics["val_loss"][0]      # it learned something


def test_unknown_optimizer_and_bad_lr(task):
    model = task.build_model()
    with pytest.raises(ValueError, match="unknown optimizer"):
        tuning.make_optimizer("adamax", model, 1e-3)
    for lr in (0.0, -1e-3, float("nan"), True):
        with pytest.raises(ValueError, match="positive"):
            tuning.make_optimizer("adam", model, lr)


def test_muon_needs_aux_lr_and_gives_vectors_to_adamw(task):
    model = task.build_model()
    with pytest.raises(ValueError, match="aux_lr"):
        tuning.make_optimizer("muon", model, 0.02)
    opt = tuning.make_optimizer("muon", model, 0.02, aux_lr=1e-3)
    muon_group, adamw_group = opt.param_groups
    assert all(p.ndim == 2 for p in muon_group["params"])
    assert any(p.ndim == 1 for p in adamw_group["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert adamw_group["lr"] == 1e-3


# --------------------------------------------------------------------------- fairness of a run


def test_same_seed_same_init_and_batches(task):
    a = tuning.run(task, "sgd", 0.1, seed=3)
    b = tuning.run(task, "adam", 1e-2, seed=3)
    c = tuning.run(task, "sgd", 0.1, seed=3)
    d = tuning.run(task, "sgd", 0.1, seed=4)
    for k in a.metrics:                                         # same initial model
        assert a.metrics[k][0] == b.metrics[k][0]
    assert a.train_loss[0] == b.train_loss[0]                   # same first batch, same weights
    np.testing.assert_array_equal(a.train_loss, c.train_loss)   # deterministic
    assert a.train_loss[0] != d.train_loss[0]


def test_run_uses_the_one_training_loop(task, monkeypatch):
    calls = []
    real = compare.train_steps

    def counting(*args, **kw):
        calls.append(args[2])
        return real(*args, **kw)

    monkeypatch.setattr(compare, "train_steps", counting)
    r = tuning.run(task, "adam", 1e-2, seed=0, eval_every=5)
    assert sum(calls) == task.steps and len(calls) == 4
    assert r.steps.tolist() == [0, 5, 10, 15, 20]
    assert (np.diff(r.seconds) >= 0).all()
    with pytest.raises(ValueError, match="eval_every"):
        tuning.run(task, "adam", 1e-2, seed=0, eval_every=0)


def test_schedule_is_warmup_then_cosine(task, monkeypatch):
    seen = []
    real = compare.train_steps

    def spy(opt, sched, steps, loss_fn):
        for _ in range(steps):
            seen.append(opt.param_groups[0]["lr"])
            real(opt, sched, 1, loss_fn)
        return np.zeros(steps), 0.0

    monkeypatch.setattr(compare, "train_steps", spy)
    tuning.run(task, "sgd", 0.1, seed=0, warmup=0.2)
    from nntrain import schedules

    expected = [schedules.warmup_cosine(k, 0.1, 4, 20) for k in range(20)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_divergence_is_stopped_and_scored_inf(task):
    r = tuning.run(task, "sgd", 1e6, seed=0, eval_every=5)
    assert r.diverged
    assert r.final("val_loss") == math.inf
    assert np.isnan(r.metrics["val_acc"][-1])


# --------------------------------------------------------------------------- the search


def _fake_run(optimum):
    """A stand-in for tuning.run whose validation loss is (log10 lr - log10 optimum)^2 + seed noise."""
    def fake(task, name, lr, seed, **kw):
        score = (math.log10(lr) - math.log10(optimum)) ** 2 + 1e-3 * seed
        m = {"val_loss": np.array([9.0, score])}
        return tuning.Run(name, lr, seed, np.zeros(1), np.array([0, 1]), np.array([0.0, 1.0]), m)
    return fake


def test_search_extends_past_an_edge(monkeypatch):
    monkeypatch.setattr(tuning, "run", _fake_run(optimum=0.08))
    s = tuning.lr_search(None, "sgd", [1e-3, 2e-3, 4e-3, 8e-3], [0, 1], progress=False, extend=10)
    assert not s.at_edge and s.best == pytest.approx(0.064)
    assert s.grid[0] == 1e-3 and s.grid[-1] > s.best
    assert tuning.check_bracket(s) == s.best
    assert len(s.runs) == 2 * len(s.grid)                       # every rate on every seed, once


def test_search_flags_an_edge_it_cannot_leave(monkeypatch):
    monkeypatch.setattr(tuning, "run", _fake_run(optimum=10.0))
    s = tuning.lr_search(None, "adam", [1e-4, 1e-3, 1e-2], [0, 1], progress=False, extend=1)
    assert s.at_edge and s.best == s.grid[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="edge"):
        tuning.check_bracket(s)


def test_search_without_extension_keeps_the_grid(monkeypatch):
    monkeypatch.setattr(tuning, "run", _fake_run(optimum=1e-3))
    s = tuning.lr_search(None, "adam", [1e-4, 1e-3, 1e-2], [0], progress=False, extend=0)
    assert s.grid == s.initial and s.best == 1e-3 and not s.at_edge


def test_search_bad_grids():
    for grid, msg in [([], "empty"), ([1e-3], "one rate"), ([1e-3, 1e-3], "repeated"),
                      ([1e-3, 2e-3, 3e-3], "geometric"), ([0.0, 1e-3], "positive"),
                      ([-1e-3, 1e-3], "positive")]:
        with pytest.raises(ValueError, match=msg):
            tuning.lr_search(None, "sgd", grid, [0], progress=False)
    with pytest.raises(ValueError, match="seeds"):
        tuning.lr_search(None, "sgd", [1e-3, 1e-2], [], progress=False)


def test_all_diverged_is_an_edge(monkeypatch):
    def fake(task, name, lr, seed, **kw):
        return tuning.Run(name, lr, seed, np.array([np.nan]), np.array([0, 1]), np.array([0.0, 1.0]),
                          {"val_loss": np.array([1.0, np.nan])})
    monkeypatch.setattr(tuning, "run", fake)
    s = tuning.lr_search(None, "sgd", [1.0, 10.0], [0], progress=False)
    assert s.at_edge
    with pytest.raises(ValueError):
        tuning.check_bracket(s)


def test_real_search_brackets_on_a_small_task(task):
    s = tuning.lr_search(task, "adam", [2.5e-3, 1e-2, 4e-2], [0, 1], progress=False, extend=4)
    assert tuning.check_bracket(s) in s.grid
    finals = {"adam": tuning.report(task, "adam", s.best, [10, 11], eval_every=10, progress=False)}
    rows = tuning.results_table(finals, ["test_acc", "test_loss"])
    assert rows[0]["seeds"] == 2 and rows[0]["lr"] == s.best
    lo, hi = rows[0]["test_acc"][1:]
    assert lo <= rows[0]["test_acc"][0] <= hi
    lines = tuning.table_lines(rows, ["test_acc"], ["точность"], scale={"test_acc": 100})
    assert len(lines) == 2 and "Adam" in lines[1] and "[" in lines[1]


# --------------------------------------------------------------------------- intervals


def test_t_interval_matches_the_formula():
    x = [0.9, 0.92, 0.95, 0.91]
    mean, lo, hi = tuning.interval(x)
    half = 3.182 * np.std(x, ddof=1) / math.sqrt(4)
    assert mean == pytest.approx(np.mean(x))
    assert (lo, hi) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    assert tuning.interval(x, "minmax") == pytest.approx((np.mean(x), 0.9, 0.95))


def test_interval_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        tuning.interval([0.5])
    with pytest.raises(ValueError, match="at least two"):
        tuning.interval([], "minmax")
    with pytest.raises(ValueError, match="unknown interval"):
        tuning.interval([0.5, 0.6], "bootstrap")


def test_results_table_needs_two_seeds(task):
    r = tuning.run(task, "sgd", 0.1, seed=0)
    with pytest.raises(ValueError, match="at least two"):
        tuning.results_table({"sgd": [r]}, ["test_acc"])
    with pytest.raises(ValueError, match="no runs"):
        tuning.results_table({"sgd": []}, ["test_acc"])


# --------------------------------------------------------------------------- data


def test_holdout_splits_partition_the_training_split():
    sp = tuning.holdout_splits("digits", val_fraction=0.25, seed=0)
    assert sp["dataset"] == "digits"
    (xtr, _), (xv, _), (xte, _) = sp["train"], sp["val"], sp["test"]
    assert len(xv) == round(0.25 * (len(xtr) + len(xv)))
    rows = {tuple(r.tolist()) for r in xtr}
    overlap = sum(tuple(r.tolist()) in rows for r in xv)
    assert overlap < len(xv) // 10            # digits has a few duplicate images, no shared rows
    with pytest.raises(ValueError, match="val_fraction"):
        tuning.holdout_splits("digits", val_fraction=1.0)


def test_holdout_splits_name_the_fallback(tmp_path, monkeypatch):
    from nntrain import data

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(data, "fashion_mnist_arrays", offline)
    sp = tuning.holdout_splits("fashion_mnist")
    assert sp["dataset"] == "digits" and sp["train"][0].shape[1] == 64


def test_classification_task_bad_sizes(splits):
    with pytest.raises(ValueError, match="batch_size"):
        tuning.classification_task(splits, [8], batch_size=0, steps=10)
    with pytest.raises(ValueError, match="steps"):
        tuning.classification_task(splits, [8], batch_size=8, steps=0)


def test_plots_run(task):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [tuning.run(task, "adam", 1e-2, seed=s, eval_every=10) for s in (0, 1)]
    fig, (a, b, c) = plt.subplots(1, 3)
    tuning.plot_curves(a, runs, "test_acc")
    tuning.plot_curves(b, runs, "test_acc", x="seconds")
    tuning.plot_final(c, tuning.results_table({"adam": runs}, ["test_acc"]), "test_acc")
    with pytest.raises(ValueError):
        tuning.plot_curves(a, runs, "test_acc", x="epochs")
    plt.close(fig)


@pytest.mark.parametrize("name", sorted(tuning.TWINS))
def test_library_twins_agree(task, name):
    ours = tuning.run(task, name, 0.05, seed=0)
    ref = tuning.run(task, name, 0.05, seed=0, library=True)
    np.testing.assert_allclose(ours.train_loss, ref.train_loss, rtol=1e-5, atol=1e-6)


def test_no_twin_for_the_new_methods(task):
    with pytest.raises(ValueError, match="no torch.optim"):
        tuning.make_optimizer("muon", task.build_model(), 0.02, aux_lr=1e-3, library=True)


def test_paired_differences(task):
    a = [tuning.run(task, "adam", 1e-2, seed=s) for s in (0, 1, 2)]
    b = [tuning.run(task, "sgd", 0.1, seed=s) for s in (1, 2, 5)]
    mean, lo, hi = tuning.paired(a, b, "val_loss")
    diffs = [a[i].final("val_loss") - b[i - 1].final("val_loss") for i in (1, 2)]
    assert mean == pytest.approx(np.mean(diffs)) and lo <= mean <= hi
    with pytest.raises(ValueError, match="share no seed"):
        tuning.paired(a, [tuning.run(task, "sgd", 0.1, seed=9)], "val_loss")


def test_shampoo_divergence_is_a_divergence_not_a_crash(task):
    r = tuning.run(task, "shampoo", 1e4, seed=0, eval_every=5)
    assert r.diverged and r.final("val_loss") == math.inf


# --------------------------------------------------------------------------- margins and multiple tests


def test_side_margins(monkeypatch):
    monkeypatch.setattr(tuning, "run", _fake_run(optimum=1e-2))
    s = tuning.lr_search(None, "adam", [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2], [1], progress=False, extend=0)
    left, right = tuning.side_margins(s)
    best = s.scores[s.best]
    assert left == pytest.approx(s.scores[2.5e-3] / best - 1)
    assert right == pytest.approx(s.scores[4e-2] / best - 1)
    s.scores[4e-2] = math.inf                                   # a diverged rate
    assert tuning.side_margins(s)[1] == math.inf
    edge = tuning.lr_search(None, "adam", [1e-2, 2e-2], [1], progress=False, extend=0)
    assert tuning.side_margins(edge)[0] == 0.0                  # nothing on the left of the best


def test_paired_test_matches_scipy(task):
    from scipy import stats

    a = [tuning.run(task, "adam", 1e-2, seed=s) for s in (0, 1, 2, 3)]
    b = [tuning.run(task, "sgd", 0.1, seed=s) for s in (0, 1, 2, 3)]
    p = tuning.paired_test(a, b, "val_loss")
    ref = stats.ttest_rel([r.final("val_loss") for r in a], [r.final("val_loss") for r in b])
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    assert tuning.paired_test(a, a, "val_loss") == 1.0          # identical runs: no evidence
    with pytest.raises(ValueError, match="two shared seeds"):
        tuning.paired_test(a[:1], b[:1], "val_loss")


def test_holm_by_hand():
    adj = tuning.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4·0.01, 3·0.03, max(0.09, 2·0.04), 1·0.5
    assert adj == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert list(adj) == ["a", "b", "c", "d"]                    # the caller's order is kept
    assert tuning.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    with pytest.raises(ValueError, match="p-value"):
        tuning.holm({"x": 1.5})


def test_holdout_splits_refuse_mixed_fallback(monkeypatch):
    from nntrain import data

    def half_offline(split="train", **kw):
        if split == "test":
            raise OSError("offline")
        x = np.random.default_rng(0).random((50, 784), dtype=np.float32)
        return x, np.arange(50) % 10

    monkeypatch.setattr(data, "fashion_mnist_arrays", half_offline)
    with pytest.raises(ValueError, match="different data sets"):
        tuning.holdout_splits("fashion_mnist")
