"""Tests of the small optimizer benchmark (chapter 11, «Как честно сравнивать оптимизаторы»)."""

import math

import numpy as np
import pytest
import torch

from nntrain import benchmark as bm
from nntrain import profiles


@pytest.mark.parametrize("name", bm.WORKLOADS)
def test_workloads_build_and_train(name):
    w = bm.make_workload(name, steps=4, eval_every=2)
    assert w.steps == 4 and list(w.eval_steps()) == [2, 4]
    res = bm.run_benchmark([w], solvers=("adam", "muon"), n_points=2, seeds=(0,), progress=False)
    for s in ("adam", "muon"):
        assert res.curves[s][name].shape == (2, 1, 2)
        assert res.test[s][name].shape == (2, 1)
        assert (res.cpu[s][name] >= 0).all() and (res.wall[s][name] > 0).all()
    # metrics are losses or MSE: positive where finite
    c = res.curves["adam"][name]
    assert np.all(c[np.isfinite(c)] > 0)


def test_run_is_seeded():
    w = bm.make_workload("reg", steps=6, eval_every=3)
    a = bm.run_benchmark([w], ("momentum",), n_points=2, seeds=(1,), progress=False)
    b = bm.run_benchmark([w], ("momentum",), n_points=2, seeds=(1,), progress=False)
    np.testing.assert_array_equal(a.curves["momentum"]["reg"], b.curves["momentum"]["reg"])


@pytest.mark.parametrize("solver", bm.SOLVERS)
def test_search_points_deterministic_and_inside(solver):
    pts = bm.search_points(solver, 16, seed=0)
    assert pts == bm.search_points(solver, 16, seed=0)
    assert pts != bm.search_points(solver, 16, seed=1)
    assert len(pts) == 16
    for name, (lo, hi) in bm.SPACES[solver].params.items():
        v = np.array([p[name] for p in pts])
        assert (v >= lo).all() and (v <= hi).all()
        # a quasi-random sequence fills the log range: one point in each of 4 quarters at least
        u = np.log(v / lo) / np.log(hi / lo)
        assert set(np.floor(4 * u).astype(int)) == {0, 1, 2, 3}
    kw = bm.options(solver, pts[0])
    assert kw["lr"] == pts[0]["lr"]
    if solver == "muon":
        assert math.isclose(kw["aux_lr"], bm.MUON_AUX_RATIO * kw["lr"])


def test_same_budget_for_every_solver():
    n = {s: len(bm.search_points(s, 12)) for s in bm.SOLVERS}
    assert set(n.values()) == {12}


def test_target_rule_on_hand_made_curves():
    steps = np.array([10, 20, 30, 40])          # budget 40: the target uses evaluations <= 30
    a = np.array([[[5.0, 3.0, 2.0, 0.5],        # one point, three seeds; a diverged seed counts
                   [4.0, 2.5, 1.5, 0.4],        # as +inf, so the median is the larger finite one:
                   [np.nan] * 4]])              # 5, 3, 2, 0.5
    b = np.array([[[3.0, 2.0, 1.8, 1.0], [3.0, 2.0, 1.8, 1.0], [3.0, 1.9, 1.7, 0.9]]])  # 3, 2, 1.8, 1
    assert bm.set_target([a, b], steps, budget=40, fraction=0.75) == 1.8
    # the whole budget would let a's last evaluation set the target
    assert bm.set_target([a, b], steps, budget=40, fraction=1.0) == 0.5
    assert bm.set_target(b, steps, budget=40, fraction=0.5) == 2.0
    t = bm.trial_times(b, steps, 1.8)
    np.testing.assert_array_equal(t, [[30, 30, 30]])
    t = bm.trial_times(a, steps, 1.8)
    np.testing.assert_array_equal(t, [[40, 30, np.inf]])


def test_target_depends_on_the_competitors():
    steps = np.array([1, 2])
    slow = np.full((1, 3, 2), 2.0)
    fast = np.full((1, 3, 2), 1.0)
    assert bm.set_target([slow], steps, 2) == 2.0
    assert bm.set_target([slow, fast], steps, 2) == 1.0


def test_targets_reference_solvers():
    w = bm.make_workload("reg", steps=6, eval_every=3)
    res = bm.run_benchmark([w], ("momentum", "adam"), n_points=2, seeds=(0,), progress=False)
    both = bm.targets(res)["reg"]
    ref = bm.targets(res, reference=("momentum",))["reg"]
    assert ref == bm.set_target([res.curves["momentum"]["reg"]], w.eval_steps(), 6)
    assert both <= ref
    with pytest.raises(ValueError, match="reference solver"):
        bm.targets(res, reference=("muon",))


def test_time_table_matches_budget_scores_first_draw():
    rng = np.random.default_rng(0)
    pool = {s: {w: rng.integers(1, 10, size=(6, 3)).astype(float) for w in ("a", "b")}
            for s in ("x", "y")}
    pool["y"]["b"][:] = np.inf
    table = bm.time_table(pool, trials=2, studies=3, seed=5)
    scores = profiles.budget_scores(pool, trials=2, studies=3, draws=1, seed=5)
    direct = profiles.algoperf_score(table)
    for s in ("x", "y"):
        assert math.isclose(direct[s], scores[s][0])
    assert table.times[1, 1] == math.inf


def test_bad_input():
    with pytest.raises(ValueError, match="workload"):
        bm.make_workload("resnet")
    with pytest.raises(ValueError, match="eval_every"):
        bm.make_workload("mlp", steps=5, eval_every=10)
    with pytest.raises(ValueError, match="solver"):
        bm.search_points("lion", 4)
    with pytest.raises(ValueError, match="must give"):
        bm.options("adam", {"lr": 1e-3})
    w = bm.make_workload("reg", steps=2, eval_every=1)
    with pytest.raises(ValueError, match="solver"):
        bm.run_benchmark([w], ("sgd2",), n_points=1, progress=False)
    with pytest.raises(ValueError, match="Workload"):
        bm.run_benchmark(["reg"], n_points=1, progress=False)
    with pytest.raises(ValueError, match="curves must be"):
        bm.set_target([np.zeros((2, 3))], [1, 2, 3], 3)
    with pytest.raises(ValueError, match="curves must be"):
        bm.set_target([np.zeros((2, 3, 4))], [1, 2, 3], 3)
    with pytest.raises(ValueError, match="fraction"):
        bm.set_target([np.zeros((1, 1, 3))], [1, 2, 3], 3, fraction=0.0)
    with pytest.raises(ValueError, match="diverged"):
        bm.set_target([np.full((1, 3, 3), np.nan)], [1, 2, 3], 3)
    with pytest.raises(ValueError, match="curve must be"):
        bm.trial_times(np.zeros((2, 3)), [1, 2, 3], 1.0)
    with pytest.raises(ValueError, match="unit"):
        bm.pools(None, {}, unit="hours")
    with pytest.raises(ValueError, match="points, seeds"):
        bm.time_table({"x": {"a": np.ones(3)}}, trials=1)
    with pytest.raises(ValueError, match="'lr'"):
        bm.Space({"momentum": (0.1, 0.9)})
    with pytest.raises(ValueError, match="0 < low < high"):
        bm.Space({"lr": (1.0, 0.1)})


def test_digits_cnn_shape():
    out = bm.DigitsCNN()(torch.zeros(5, 1, 8, 8))
    assert out.shape == (5, 10)


def test_teacher_regression_splits():
    s = bm.teacher_regression(n=100)
    assert [len(s[k][0]) for k in ("train", "val", "test")] == [60, 20, 20]
    assert s["train"][1].shape == (60, 1)


def test_combine_parts():
    a = bm.run_benchmark([bm.make_workload("reg", 4, 2)], ("adam",), n_points=2, seeds=(0,),
                         progress=False)
    b = bm.run_benchmark([bm.make_workload("mlp", 4, 2)], ("adam",), n_points=2, seeds=(0,),
                         progress=False)
    c = bm.combine([a, b])
    assert c.workloads == ("reg", "mlp")
    np.testing.assert_array_equal(c.curves["adam"]["mlp"], b.curves["adam"]["mlp"])
    with pytest.raises(ValueError, match="two parts"):
        bm.combine([a, a])
    with pytest.raises(ValueError, match="nothing"):
        bm.combine([])


def test_seed_median_counts_nan_as_inf():
    c = np.array([[[1.0, 2.0], [3.0, np.nan], [2.0, np.nan]]])   # (1 point, 3 seeds, 2 evals)
    np.testing.assert_array_equal(bm.seed_median(c), [[2.0, np.inf]])
    with pytest.raises(ValueError, match="points, seeds"):
        bm.seed_median(np.ones(3))


def test_default_fraction_is_half_the_budget():
    steps = np.array([10, 20, 30, 40])
    b = np.array([[[3.0, 2.0, 1.8, 1.0]] * 3])
    assert bm.set_target(b, steps, budget=40) == 2.0
