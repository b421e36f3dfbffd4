"""Performance profiles and the AlgoPerf score (nntrain.profiles, chapter 11) on hand-made time tables."""

import math

import numpy as np
import pytest

from nntrain import profiles as P

INF = math.inf


def table(rows, workloads=("a", "b", "c", "d")):
    return P.TimeTable.from_dict({s: dict(zip(workloads, ts)) for s, ts in rows.items()})


@pytest.fixture
def hand():
    # x is fastest on a, b; y on c; z on d and twice slower elsewhere; y fails on b.
    return table({"x": [1.0, 2.0, 6.0, 8.0], "y": [2.0, INF, 3.0, 4.0], "z": [2.0, 4.0, 6.0, 2.0]})


def test_ratios_by_hand(hand):
    r = P.performance_ratios(hand)
    np.testing.assert_allclose(r, [[1, 1, 2, 4], [2, INF, 1, 2], [2, 2, 2, 1]])


def test_profile_by_hand(hand):
    rho = P.performance_profile(hand, [1.0, 1.5, 2.0, 3.999, 4.0, 100.0])
    np.testing.assert_allclose(rho, [[0.5, 0.5, 0.75, 0.75, 1.0, 1.0],
                                     [0.25, 0.25, 0.75, 0.75, 0.75, 0.75],
                                     [0.25, 0.25, 1.0, 1.0, 1.0, 1.0]])


def test_score_by_hand(hand):
    # per workload (4 - r)/3, clipped to [0, 1], averaged
    b = P.algoperf_score(hand)
    assert b["x"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert b["y"] == pytest.approx((2 / 3 + 0 + 1 + 2 / 3) / 4)
    assert b["z"] == pytest.approx((2 / 3 + 2 / 3 + 2 / 3 + 1) / 4)
    assert P.ranking(b) == ["z", "x", "y"]


def test_score_is_area_under_profile(hand):
    # fine Riemann sums of the profile converge to the closed form
    taus = np.linspace(1, 4, 300001)
    rho = P.performance_profile(hand, taus)
    area = ((rho[:, 1:] + rho[:, :-1]) / 2 * np.diff(taus)).sum(axis=1) / 3
    np.testing.assert_allclose(area, list(P.algoperf_score(hand).values()), atol=1e-5)


@pytest.mark.parametrize("seed", range(20))
def test_trapz_within_half_a_cell(seed):
    rng = np.random.default_rng(seed)
    times = np.exp(rng.normal(size=(5, 7)))
    times[rng.random(times.shape) < 0.15] = INF
    t = P.TimeTable(tuple("stuvw"), tuple("ABCDEFG"), times)
    for n in (10, 100):
        exact, trap = P.algoperf_score(t), P.algoperf_score_trapz(t, num_points=n)
        for s in t.solvers:
            assert abs(exact[s] - trap[s]) <= 1 / (2 * (n - 1)) + 1e-12


def test_trapz_matches_algoperf_code_path():
    # AlgoPerf: times > 4 x best set to inf, ratios, rho on linspace(1, 4, 100), np.trapz / 3
    t = table({"p": [1.0, 5.0, 2.5, 1.0], "q": [3.9, 1.0, 1.0, 7.0]})
    df = t.times.copy()
    best = df.min(axis=0)
    df[df > 4 * best] = INF
    r = df / best
    taus = np.linspace(1, 4, 100)
    rho = (r[:, :, None] <= taus).sum(axis=1) / r.shape[1]
    ref = np.trapezoid(rho, taus, axis=1) / 3 if hasattr(np, "trapezoid") else np.trapz(rho, taus, axis=1) / 3
    np.testing.assert_allclose(list(P.algoperf_score_trapz(t).values()), ref)


def test_fastest_everywhere_scores_one_and_capped_scores_zero():
    t = table({"fast": [1, 1, 1, 1], "slow": [4, 5, INF, 40]})
    assert P.algoperf_score(t) == {"fast": 1.0, "slow": 0.0}
    np.testing.assert_array_equal(P.capped_ratios(t)[1], [4, 4, 4, 4])


def test_workload_nobody_solved_counts_as_cap_for_all():
    t = table({"x": [1, 2, INF, 1], "y": [2, 1, INF, 1]})
    assert t.unsolved() == ["c"]
    assert np.isinf(P.performance_ratios(t)[:, 2]).all()
    np.testing.assert_array_equal(P.capped_ratios(t)[:, 2], [4, 4])
    b = P.algoperf_score(t)
    assert b["x"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)  # the unsolved workload still counts in n
    assert P.performance_profile(t, [1e6]).max() == 0.75


def test_score_depends_on_the_field():
    # C is best only on w; taking C away changes the best time there and flips A and B
    t = table({"A": [1.0, 1.0, 4.5], "B": [1.9, 1.9, 2.0], "C": [9.0, 9.0, 1.0]}, workloads=("u", "v", "w"))
    full, reduced = P.algoperf_score(t), P.algoperf_score(t.without("C"))
    assert full["A"] == pytest.approx((1 + 1 + 0) / 3)
    assert full["B"] == pytest.approx((0.7 + 0.7 + 2 / 3) / 3)
    assert reduced["A"] == pytest.approx((1 + 1 + (4 - 2.25) / 3) / 3)
    assert reduced["B"] == pytest.approx((0.7 + 0.7 + 1) / 3)
    assert P.ranking(full)[:2] == ["B", "A"] and P.ranking(reduced) == ["A", "B"]


def test_time_to_target():
    steps = [0, 10, 20, 30]
    assert P.time_to_target(steps, [2.0, 1.0, 0.5, 0.4], 0.5) == 20
    assert P.time_to_target(steps, [0.1, 0.5, 0.9, 0.95], 0.9, mode="max") == 20
    assert P.time_to_target(steps, [2.0, np.nan, np.nan, np.nan], 0.5) == INF
    assert P.time_to_target(steps, [2.0, 1.0, 0.6, 0.7], 0.5) == INF
    assert P.time_to_target([], [], 1.0) == INF


def test_study_and_workload_time():
    assert P.study_time([5.0, INF, 3.0]) == 3.0
    assert P.study_time([INF, INF]) == INF
    assert P.workload_time([3.0, INF, 1.0]) == 3.0
    assert P.workload_time([INF, INF, 1.0]) == INF
    with pytest.raises(ValueError, match="odd"):
        P.workload_time([1.0, 2.0])


def test_draw_studies_distinct_points():
    rng = np.random.default_rng(0)
    idx = P.draw_studies(15, 5, 3, rng)
    assert idx.shape == (3, 5) and len(set(idx.ravel())) == 15
    idx = P.draw_studies(8, 5, 3, rng)  # not enough for all: distinct within each study
    assert idx.shape == (3, 5) and all(len(set(row)) == 5 for row in idx)
    with pytest.raises(ValueError, match="at least 9"):
        P.draw_studies(8, 9, 1, rng)


def test_budget_scores_full_pool_is_deterministic():
    # with trials = the whole pool, every study sees every point: the score does not depend on the draw
    pools = {"x": {"a": np.array([[1.0], [3.0]]), "b": np.array([[INF], [2.0]])},
             "y": {"a": np.array([[2.0], [2.0]]), "b": np.array([[1.0], [INF]])}}
    b = P.budget_scores(pools, trials=2, studies=1, draws=5)
    ref = P.algoperf_score(table({"x": [1.0, 2.0], "y": [2.0, 1.0]}, workloads=("a", "b")))
    for s in pools:
        np.testing.assert_allclose(b[s], ref[s])


def test_budget_scores_one_trial_matches_enumeration():
    # one trial, one study: the mean score over many draws approaches the average over all 2 x 2 picks
    pools = {"x": {"a": np.array([[1.0], [4.0]])}, "y": {"a": np.array([[2.0], [INF]])}}
    b = P.budget_scores(pools, trials=1, studies=1, draws=4000, seed=1)
    exact = {"x": 0.0, "y": 0.0}
    for tx in (1.0, 4.0):
        for ty in (2.0, INF):
            s = P.algoperf_score(table({"x": [tx], "y": [ty]}, workloads=("a",)))
            for k in exact:
                exact[k] += s[k] / 4
    for k in exact:
        assert b[k].mean() == pytest.approx(exact[k], abs=0.03)


def test_geometric_mean_speedup():
    t = table({"ref": [2.0, 8.0], "s": [1.0, 2.0], "f": [1.0, INF]}, workloads=("a", "b"))
    g = P.geometric_mean_speedup(t, "ref")
    assert g["ref"] == pytest.approx(1.0)
    assert g["s"] == pytest.approx(math.sqrt(2 * 4))
    assert g["f"] == 0.0


@pytest.mark.parametrize("bad, match", [
    ({"x": [0.0, 1.0]}, "positive"), ({"x": [-1.0, 1.0]}, "positive"), ({"x": [np.nan, 1.0]}, "NaN"),
])
def test_bad_times(bad, match):
    with pytest.raises(ValueError, match=match):
        table(bad, workloads=("a", "b"))


def test_bad_tables_and_arguments(hand):
    with pytest.raises(ValueError, match="shape"):
        P.TimeTable(("x",), ("a", "b"), np.ones((2, 2)))
    with pytest.raises(ValueError, match="unique"):
        P.TimeTable(("x", "x"), ("a",), np.ones((2, 1)))
    with pytest.raises(ValueError, match="expected"):
        P.TimeTable.from_dict({"x": {"a": 1.0}, "y": {"b": 1.0}})
    with pytest.raises(ValueError, match="unknown solver"):
        hand.without("nobody")
    with pytest.raises(ValueError, match="r_max"):
        P.algoperf_score(hand, r_max=1.0)
    with pytest.raises(ValueError, match="taus"):
        P.performance_profile(hand, [0.5])
    with pytest.raises(ValueError, match="unknown mode"):
        P.time_to_target([0, 1], [1, 0], 0.5, mode="median")
    with pytest.raises(ValueError, match="increasing"):
        P.time_to_target([1, 0], [1, 0], 0.5)
    with pytest.raises(ValueError, match="one length"):
        P.time_to_target([0, 1, 2], [1, 0], 0.5)
    with pytest.raises(ValueError, match="reference"):
        P.geometric_mean_speedup(hand, "w")
    assert not hand.times.flags.writeable


def test_deal_table_is_the_first_draw_of_budget_scores():
    rng = np.random.default_rng(3)
    pools = {s: {w: np.where(rng.random((6, 3)) < 0.3, INF, rng.integers(1, 50, (6, 3)).astype(float))
                 for w in "abc"} for s in "xyz"}
    first = P.algoperf_score(P.deal_table(pools, 2, 3, np.random.default_rng(7)))
    scores = P.budget_scores(pools, 2, 3, draws=4, seed=7)
    for s in pools:
        assert scores[s][0] == pytest.approx(first[s])
    with pytest.raises(ValueError, match="2-D"):
        P.deal_table({"x": {"a": np.ones(3)}}, 1)


def test_chapter_hand_tables():
    # the tables of chapter 11 (comparing.ipynb): demo, field flip, exercise ex-cmp11-profile
    demo = P.TimeTable(("A", "B", "C"), ("w1", "w2", "w3", "w4"),
                       [[100, 200, 150, INF], [120, 100, 600, 900], [300, 450, 100, 300]])
    b = P.algoperf_score(demo)
    assert [b[s] for s in "ABC"] == pytest.approx([5 / 8, 17 / 30, 7 / 12])
    field = P.TimeTable(("A", "B", "C"), ("w1", "w2"), [[INF, 200], [450, 500], [100, 500]])
    assert P.algoperf_score(field) == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.75})
    assert P.algoperf_score(field.without("C")) == pytest.approx({"A": 0.5, "B": 0.75})
    ex = P.TimeTable(("X", "Y", "Z"), ("w1", "w2", "w3", "w4", "w5"),
                     [[10, 40, 30, INF, 25], [20, 20, 90, 50, 25], [15, 100, 30, 60, 80]])
    np.testing.assert_allclose(P.performance_profile(ex, [1.0, 2.0]),
                               [[0.6, 0.8], [0.6, 0.8], [0.2, 0.6]])
    b = P.algoperf_score(ex)
    assert [b[s] for s in "XYZ"] == pytest.approx([11 / 15, 0.8, 91 / 150])
    trap = P.algoperf_score_trapz(ex)
    assert max(abs(b[s] - trap[s]) for s in b) <= 1 / 198


def test_fastest_counts_by_hand():
    # one point, one seed: every deal gives the same table
    pools = {"x": {"a": [[1.0]], "b": [[2.0]], "c": [[INF]]},
             "y": {"a": [[3.0]], "b": [[2.0]], "c": [[INF]]},
             "z": {"a": [[5.0]], "b": [[4.0]], "c": [[INF]]}}
    counts = P.fastest_counts(pools, trials=1, studies=3, draws=5)
    assert counts == {"x": 1.0, "y": 0.0, "z": 0.0}   # b is a tie, c unsolved


def test_fastest_counts_follow_budget_scores_deals():
    rng = np.random.default_rng(1)
    pools = {s: {w: rng.integers(1, 6, size=(6, 3)).astype(float) for w in "ab"} for s in "xyz"}
    counts = P.fastest_counts(pools, trials=2, studies=3, draws=7, seed=3)
    gen = np.random.default_rng(3)
    want = {s: 0.0 for s in "xyz"}
    for _ in range(7):
        t = P.deal_table(pools, 2, 3, gen)
        for j in range(2):
            col = t.times[:, j]
            if (col == col.min()).sum() == 1:
                want[t.solvers[int(np.argmin(col))]] += 1 / 7
    for s in "xyz":
        assert counts[s] == pytest.approx(want[s])
    with pytest.raises(ValueError, match="draws"):
        P.fastest_counts(pools, 2, draws=0)
