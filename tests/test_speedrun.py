"""Tests of nntrain.speedrun: the record table, speed-ups, our categorisation, the variance tools."""

import math
from pathlib import Path

import numpy as np
import pytest

from nntrain import speedrun as S

ROOT = Path(__file__).resolve().parents[1]
HEADER = "record,date,minutes,kind,change,folder\n"


def write(tmp_path, body: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("# comment\n" + HEADER + body, encoding="utf-8")
    return path


def test_shipped_table_loads():
    recs = S.load_records()
    assert recs[0].kind == "baseline" and recs[0].minutes == 45
    assert recs[-1].record == 89 and recs[-1].minutes == pytest.approx(1.23)
    assert sum(r.kind == "retime" for r in recs) == 2
    pe = [r for r in recs if r.record == 38][0]
    assert "Polar Express" in pe.change and pe.url.endswith("2025-09-29_PolarExpress")
    # rows the chapter names, as in README.md at commit f411b3d3
    by = {r.record: r for r in recs if r.kind == "record"}
    assert (by[3].minutes, str(by[3].date)) == (24.9, "2024-10-04")
    assert (by[5].minutes, by[12].minutes, by[21].minutes) == (15.2, 5.03, 2.933)
    assert [r.minutes for r in recs if r.kind == "retime"] == [2.997, 3.014]


def test_only_one_copy_of_the_table():
    # the table lives in the package only (it must install with nntrain for Colab)
    assert not (ROOT / "assets" / "data" / "speedrun_records.csv").exists()


def test_default_path_is_inside_the_package():
    assert S.default_path().parent.name == "assets"
    assert S.default_path().parent.parent.name == "nntrain"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        S.load_records(tmp_path / "nope.csv")


@pytest.mark.parametrize("minutes", ["0", "-1.5", "nan"])
def test_non_positive_time(tmp_path, minutes):
    path = write(tmp_path, f"1,2024-05-28,45,baseline,a,\n2,2024-06-06,{minutes},record,b,\n")
    with pytest.raises(ValueError, match="positive"):
        S.load_records(path)


def test_dates_out_of_order(tmp_path):
    path = write(tmp_path, "1,2024-05-28,45,baseline,a,\n2,2024-05-01,30,record,b,\n")
    with pytest.raises(ValueError, match="date order"):
        S.load_records(path)


def test_bad_header_kind_and_date(tmp_path):
    bad = tmp_path / "h.csv"
    bad.write_text("record,date,time\n1,2024-01-01,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="columns"):
        S.load_records(bad)
    with pytest.raises(ValueError, match="kind"):
        S.load_records(write(tmp_path, "1,2024-05-28,45,best,a,\n"))
    with pytest.raises(ValueError, match="row 1"):
        S.load_records(write(tmp_path, "1,28/05/24,45,baseline,a,\n"))
    with pytest.raises(ValueError, match="no rows"):
        S.load_records(write(tmp_path, ""))


def test_speedups_telescope():
    recs = S.load_records()
    s, logs = S.speedups(recs)
    assert s[0] == 1 and logs[0] == 0
    assert logs.sum() == pytest.approx(math.log(45 / 1.23))
    # the re-timings after record 21 made it slower
    retimes = [i for i, r in enumerate(recs) if r.kind == "retime"]
    assert all(s[i] < 1 for i in retimes)


def test_categorize_rule():
    rec = lambda change, kind="record": S.Record(2, None, 1.0, kind, change, "")  # noqa: E731
    assert S.categorize(rec("Introduced the Muon optimizer")) == "optimizer"
    assert S.categorize(rec("Polar Express, replacement for Newton-Schulz")) == "optimizer"
    assert S.categorize(rec("Distributed the overhead of Muon")) == "systems"  # systems first
    assert S.categorize(rec("FP8 on MLP up-projection forward pass")) == "systems"
    assert S.categorize(rec("Attention window warmup")) == "attention"
    assert S.categorize(rec("Reduced batch size")) == "data"
    assert S.categorize(rec("Batch size schedule")) == "data"
    assert S.categorize(rec("Pad embeddings, ReLU², zero-init projections, QK-norm")) == "architecture"
    assert S.categorize(rec("Something nobody named")) == "architecture"  # the fallback
    assert S.categorize(rec("increase cooldown")) == "schedule"
    assert S.categorize(rec("x", "retime")) == "rules"
    assert S.categorize(rec("x", "baseline")) == "baseline"


@pytest.mark.parametrize("mode", ["first", "split"])
def test_category_shares_add_up(mode):
    recs = S.load_records()
    shares = S.category_shares(recs, mode)
    assert sum(shares.values()) == pytest.approx(math.log(45 / 1.23))
    assert shares["rules"] < 0
    with pytest.raises(ValueError, match="mode"):
        S.category_shares(recs, "all")


def test_ttest_reproduces_the_polar_express_record():
    x = np.array(S.POLAR_EXPRESS_LOSSES)
    assert x.mean() == pytest.approx(3.2789857, abs=1e-7)
    assert x.std(ddof=1) == pytest.approx(0.0007057, abs=1e-7)
    t, p = S.one_sided_ttest(x)
    assert t < 0 and round(p, 4) == 0.0045
    from scipy import stats

    ref = stats.ttest_1samp(x, 3.28, alternative="less")  # the code in the record's README
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    with pytest.raises(ValueError):
        S.one_sided_ttest([3.2])
    with pytest.raises(ValueError, match="equal"):
        S.one_sided_ttest([3.2, 3.2])


def test_best_of_k_matches_closed_form():
    for mu, k in [(3.2805, 1), (3.2805, 5), (3.2812, 20), (3.279, 3)]:
        mc = S.best_of_k_pass_rate(mu, 7e-4, k, n_sims=40000)
        ex = S.best_of_k_exact(mu, 7e-4, k)
        assert abs(mc - ex) < 4 * math.sqrt(ex * (1 - ex) / 40000) + 1e-3
    # at the target itself one run passes half the time
    assert S.best_of_k_exact(3.28, 7e-4, 1) == pytest.approx(0.5)
    assert S.best_of_k_exact(3.2805, 7e-4, 10) > S.best_of_k_exact(3.2805, 7e-4, 2)
    with pytest.raises(ValueError):
        S.best_of_k_exact(3.28, 0.0, 1)
    with pytest.raises(ValueError):
        S.best_of_k_pass_rate(3.28, 7e-4, 0)


def test_ttest_pass_rate_level():
    # at mean exactly on the target the test is passed with probability about alpha
    rate = S.ttest_pass_rate(3.28, 7e-4, 7, alpha=0.05, n_sims=40000)
    assert abs(rate - 0.05) < 0.01
    assert S.ttest_pass_rate(3.2785, 7e-4, 7) > 0.5
    with pytest.raises(ValueError):
        S.ttest_pass_rate(3.28, 7e-4, 1)
    with pytest.raises(ValueError):
        S.ttest_pass_rate(3.28, 7e-4, 5, alpha=1.5)


def test_ttest_exact_matches_monte_carlo():
    assert S.ttest_pass_exact(3.28, 7e-4, 7, alpha=0.01) == pytest.approx(0.01, abs=1e-9)
    for mu, n in [(3.2795, 7), (3.279, 7), (3.2795, 23), (3.2805, 5)]:
        ex = S.ttest_pass_exact(mu, 7e-4, n)
        mc = S.ttest_pass_rate(mu, 7e-4, n, n_sims=40000, seed=n)
        assert abs(mc - ex) < 4 * math.sqrt(ex * (1 - ex) / 40000) + 1e-3
    assert S.ttest_pass_exact(3.279, 7e-4, 20) > S.ttest_pass_exact(3.279, 7e-4, 7)
    # far in the tails SciPy's nct.cdf returns nan; the function must stay a probability
    for mu in np.linspace(3.2775, 3.2825, 21):
        assert 0.0 <= S.ttest_pass_exact(float(mu), 7e-4, 7) <= 1.0
    with pytest.raises(ValueError):
        S.ttest_pass_exact(3.28, 7e-4, 1)
    with pytest.raises(ValueError):
        S.ttest_pass_exact(3.28, -1.0, 5)


def test_rare_bad_runs_make_the_test_liberal():
    # mean exactly on the target, but a rare +0.004 run: the lower-tail test rejects too often
    rate = S.ttest_pass_rate(3.28, 7e-4, 7, n_sims=40000, bad_prob=0.1, bad_shift=0.004)
    assert rate > 0.03
    clean = S.ttest_pass_rate(3.28, 7e-4, 7, n_sims=40000, bad_prob=0.0)
    assert abs(clean - 0.01) < 0.004
    with pytest.raises(ValueError, match="bad_prob"):
        S.ttest_pass_rate(3.28, 7e-4, 7, bad_prob=1.0)


def test_reordered_rules_change_the_shares():
    recs = S.load_records()
    rules = S.reordered_rules("optimizer")
    assert rules[0][0] == "optimizer" and len(rules) == len(S.CATEGORY_RULES)
    base = S.category_shares(recs)
    moved = S.category_shares(recs, rules=rules)
    assert moved["optimizer"] > base["optimizer"]
    assert sum(moved.values()) == pytest.approx(sum(base.values()))
    with pytest.raises(ValueError, match="kind"):
        S.reordered_rules("magic")


def test_date_axis_formats_ticks():
    import datetime as dt

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([dt.date(2024, 5, 1), dt.date(2026, 7, 1)], [1, 2])
    S.date_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert labels and all(len(x) == 7 and x[2] == "." for x in labels)
