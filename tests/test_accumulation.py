"""Gradient accumulation (chapter 5): exact equivalences in float64, every pitfall and its fix, bad input."""

import pytest
import torch
from torch import nn

from nntrain import accumulation as acc
from nntrain.models import GPT, GPTConfig, mlp


def _data(n=24, dim=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _mlp(seed=0, dim=6, classes=3):
    torch.manual_seed(seed)
    return mlp([dim, 16, classes], activation="tanh").double()


def _grad(model, batch, k, loss_fn=acc.cross_entropy_sum, **kw):
    acc.accumulate_step(model, loss_fn, batch, k, **kw)
    return acc.flat_grad(model).clone()


@pytest.mark.parametrize("normalize", ["mean", "micro_mean", "sum"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 24])
def test_identity_float64(normalize, k):
    model, batch = _mlp(), _data()
    big = _grad(model, batch, 1, normalize=normalize)
    assert acc.grad_gap(_grad(model, batch, k, normalize=normalize), big) < 1e-13


def test_big_batch_is_plain_autograd():
    model, (x, y) = _mlp(), _data()
    loss = nn.functional.cross_entropy(model(x), y)
    ref = torch.autograd.grad(loss, list(model.parameters()))
    got = _grad(model, (x, y), 4)
    assert torch.allclose(got, torch.cat([g.reshape(-1) for g in ref]), rtol=0, atol=1e-15)


def test_unscaled_mean_is_k_times_too_large_and_sum_needs_no_division():
    model, batch = _mlp(), _data()
    big = _grad(model, batch, 1)
    assert torch.allclose(_grad(model, batch, 4, normalize="unscaled"), 4 * big, rtol=1e-12, atol=1e-15)
    assert torch.allclose(_grad(model, batch, 4, normalize="sum"), 24 * big, rtol=1e-12, atol=1e-15)


def test_unequal_token_counts_bias_micro_mean_not_global_mean():
    cfg = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16)
    torch.manual_seed(0)
    gpt = GPT(cfg).double()
    idx, tg = acc.variable_length_tokens(8, 16, 32, min_len=2, generator=torch.Generator().manual_seed(1))
    big = _grad(gpt, (idx, tg), 1, acc.token_cross_entropy_sum)
    assert acc.grad_gap(_grad(gpt, (idx, tg), 4, acc.token_cross_entropy_sum), big) < 1e-12
    bad = _grad(gpt, (idx, tg), 4, acc.token_cross_entropy_sum, normalize="micro_mean")
    assert acc.grad_gap(bad, big) > 1e-2
    # equal lengths: the per-micro-batch mean is exact again
    full = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(2))
    tg2 = torch.roll(full, -1, 1)
    big2 = _grad(gpt, (full, tg2), 1, acc.token_cross_entropy_sum)
    ok = _grad(gpt, (full, tg2), 4, acc.token_cross_entropy_sum, normalize="micro_mean")
    assert acc.grad_gap(ok, big2) < 1e-12


def test_remainder_weighted_stays_exact_and_error_is_default():
    model, batch = _mlp(), _data(n=23)
    with pytest.raises(ValueError, match="does not divide"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 4)
    big = _grad(model, batch, 1)
    for mode in ("mean", "micro_mean"):
        got = _grad(model, batch, 4, remainder="weighted", normalize=mode)
        assert acc.grad_gap(got, big) < 1e-13
    assert acc.split_sizes(23, 4, "weighted") == [6, 6, 6, 5]


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_micro_batch_counts(k):
    model, batch = _mlp(), _data()
    with pytest.raises(ValueError):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, k)


def test_bad_arguments():
    model, batch = _mlp(), _data()
    with pytest.raises(ValueError, match="larger than the batch"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 25)
    with pytest.raises(ValueError, match="normalize"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, normalize="avg")
    with pytest.raises(ValueError, match="GradScaler needs"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(ValueError, match="different numbers of rows"):
        acc.accumulate_step(model, acc.cross_entropy_sum, (batch[0], batch[1][:-1]), 2)
    with pytest.raises(ValueError, match="clip"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, clip=0.0)
    with pytest.raises(ValueError, match="l2_per_micro"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, l2=0.1, l2_per_micro=True)


def test_batchnorm_breaks_layernorm_and_groupnorm_do_not():
    x, y = _data(n=32)
    for norm, exact in [(nn.BatchNorm1d(16), False), (nn.LayerNorm(16), True), (nn.GroupNorm(4, 16), True)]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), norm, nn.Tanh(), nn.Linear(16, 3)).double()
        big = _grad(model, (x, y), 1)
        gap = acc.grad_gap(_grad(model, (x, y), 4), big)
        assert (gap < 1e-13) if exact else (gap > 1e-3), (type(norm).__name__, gap)


def test_dropout_masks_match_only_when_the_stream_is_consumed_alike():
    x, y = _data(n=16)

    def net(layers):
        torch.manual_seed(0)
        mods = [nn.Linear(6, 16), nn.Dropout(0.5), nn.Tanh()]
        if layers == 2:
            mods += [nn.Linear(16, 16), nn.Dropout(0.5), nn.Tanh()]
        return nn.Sequential(*mods, nn.Linear(16, 3)).double()

    gaps = {}
    for layers in (1, 2):
        model = net(layers)
        torch.manual_seed(1)
        big = _grad(model, (x, y), 1)
        torch.manual_seed(1)
        gaps[layers] = acc.grad_gap(_grad(model, (x, y), 4), big)
    assert gaps[1] < 1e-13 and gaps[2] > 1e-3
    # the fix: masks indexed by the example, not by the position in the RNG stream
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), acc.IndexedDropout(0.5, seed=1), nn.Tanh(),
                          nn.Linear(16, 16), acc.IndexedDropout(0.5, seed=2), nn.Tanh(),
                          nn.Linear(16, 3)).double()
    big = _grad(model, (x, y), 1)
    for m in model.modules():
        if isinstance(m, acc.IndexedDropout):
            m.step -= 1  # the same optimizer step again
    assert acc.grad_gap(_grad(model, (x, y), 4), big) < 1e-13


def test_indexed_dropout_checks_rows():
    d = acc.IndexedDropout(0.5)
    d.set_rows(0, 3)
    with pytest.raises(ValueError, match="rows"):
        d(torch.ones(4, 2))
    with pytest.raises(ValueError):
        acc.IndexedDropout(1.0)
    assert torch.equal(d.eval()(torch.ones(4, 2)), torch.ones(4, 2))


def test_clip_after_accumulation_equals_big_batch_clip_per_micro_differs():
    x, y = _data()
    model = _mlp()
    big = _grad(model, (x, y), 1, clip=0.05)
    assert acc.grad_gap(_grad(model, (x, y), 4, clip=0.05), big) < 1e-13
    per_micro = _grad(model, (x, y), 4, clip=0.05, clip_per_micro=True)
    assert acc.grad_gap(per_micro, big) > 1e-3
    # a threshold no micro-batch reaches: both methods are the plain gradient
    plain = _grad(model, (x, y), 1)
    assert acc.grad_gap(_grad(model, (x, y), 4, clip=1e6, clip_per_micro=True), plain) < 1e-13


def _train(k, steps=3, schedule_per="step", l2=0.0, l2_per_micro=False, normalize="micro_mean"):
    model, (x, y) = _mlp(), _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
    for _ in range(steps):
        acc.accumulate_step(model, acc.cross_entropy_sum, (x, y), k, optimizer=opt, scheduler=sched,
                            schedule_per=schedule_per, l2=l2, l2_per_micro=l2_per_micro,
                            normalize=normalize)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt.param_groups[0]["lr"]


def test_schedule_counted_per_optimizer_step():
    w1, lr1 = _train(1)
    w4, lr4 = _train(4)
    assert acc.grad_gap(w4, w1) < 1e-13 and lr4 == lr1 == 0.5 / 4
    bad, lr_bad = _train(4, schedule_per="micro")
    assert lr_bad == pytest.approx(0.5 / 13) and acc.grad_gap(bad, w1) > 1e-3


def test_l2_penalty_counted_once_per_step():
    w1, _ = _train(1, l2=0.1)
    assert acc.grad_gap(_train(4, l2=0.1)[0], w1) < 1e-13
    assert acc.grad_gap(_train(4, l2=0.1, l2_per_micro=True)[0], w1) > 1e-3
    # with k = 1 the two placements coincide
    assert acc.grad_gap(_train(1, l2=0.1, l2_per_micro=True)[0], w1) < 1e-13


def test_gradscaler_scales_every_backward_and_unscales_once():
    x, y = _data()
    x = x.float()
    torch.manual_seed(0)
    ref = mlp([6, 16, 3], activation="tanh")
    model = mlp([6, 16, 3], activation="tanh")
    model.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    acc.accumulate_step(ref, acc.cross_entropy_sum, (x, y), 1, optimizer=opt_ref)
    r = acc.accumulate_step(model, acc.cross_entropy_sum, (x, y), 4, optimizer=opt, scaler=scaler)
    assert r.stepped
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)
    # an overflow in one micro-batch skips the whole step and halves the scale
    scaler2 = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    x_bad = x.clone()
    x_bad[0, 0] = float("inf")
    before = [p.detach().clone() for p in model.parameters()]
    r = acc.accumulate_step(model, acc.cross_entropy_sum, (x_bad, y), 4, optimizer=opt, scaler=scaler2)
    assert not r.stepped and scaler2.get_scale() == 2.0 ** 11
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_unscale_twice_is_refused_by_torch():
    model = mlp([6, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(model(torch.ones(2, 6)).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="unscale_"):
        scaler.unscale_(opt)


def test_bytes_per_parameter_with_accumulation_buffer():
    assert sum(acc.bytes_per_parameter_accumulating("adam", "mixed", 1).values()) == 16
    per = acc.bytes_per_parameter_accumulating("adam", "mixed", 4)
    assert per["accumulation"] == 4 and sum(per.values()) == 20
    assert acc.bytes_per_parameter_accumulating("adam", "fp32", 4)["accumulation"] == 0
    with pytest.raises(ValueError):
        acc.bytes_per_parameter_accumulating("adam", "mixed", 0)
    with pytest.raises(ValueError):
        acc.bytes_per_parameter_accumulating("adam", "mixed", 2, buffer_bytes=-1)


def test_sum_in_bf16_loses_what_fp32_keeps():
    parts = torch.full((64, 4), 1e-3) + torch.tensor([1.0, 0, 0, 0])
    exact = parts.double().sum(0)
    err16 = (acc.sum_in_dtype(parts, torch.bfloat16).double() - exact).abs().max()
    err32 = (acc.sum_in_dtype(parts, torch.float32).double() - exact).abs().max()
    assert err16 > 100 * err32


def test_summation_bound_and_float32_measurement():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    model = mlp([6, 16, 3], activation="tanh")
    big = _grad(model, (x, y), 1)
    scale = acc.per_example_abs_sum(model, acc.cross_entropy_sum, (x, y))
    eps = torch.finfo(torch.float32).eps
    for k in (2, 4, 8):
        err = ((_grad(model, (x, y), k) - big).abs().double() / scale.clamp_min(1e-30)).max()
        assert err <= acc.summation_bound(64, k, eps)
    # k = 1: γ_B + γ_B, the inner-product bound of one batch on both sides
    assert acc.summation_bound(64, 1, eps) == pytest.approx(2 * 64 * eps / 2, rel=1e-4)
    with pytest.raises(ValueError):
        acc.summation_bound(10, 3, eps)


def test_split_sizes():
    assert acc.split_sizes(12, 3) == [4, 4, 4]
    assert acc.split_sizes(7, 3, "weighted") == [3, 2, 2]
    with pytest.raises(ValueError):
        acc.split_sizes(7, 3, "drop")


def test_variable_length_tokens():
    idx, tg = acc.variable_length_tokens(6, 10, 20, min_len=3, generator=torch.Generator().manual_seed(0))
    lengths = (tg != -1).sum(1)
    assert idx.shape == tg.shape == (6, 10) and bool((lengths >= 3).all()) and bool((lengths.diff() >= 0).all())
    with pytest.raises(ValueError):
        acc.variable_length_tokens(2, 3, 5, min_len=4)


def test_ddp_no_sync_one_allreduce_same_gradient():
    r = acc.ddp_allreduce_count(micro_batches=4, rows=8)
    for rank in r["ranks"]:
        assert rank["sync"]["calls"] == 4 and rank["no_sync"]["calls"] == 1
        assert rank["no_sync"]["bytes"] == 8 * r["params"]
        for mode in ("sync", "no_sync"):
            assert acc.grad_gap(rank[mode]["grad"], r["single_grad"]) < 1e-13


def test_ddp_in_process_world_of_one_counts_alike():
    r = acc.ddp_allreduce_count(micro_batches=4, world=1, rows=8)
    (rank,) = r["ranks"]
    assert rank["sync"]["calls"] == 4 and rank["no_sync"]["calls"] == 1
    assert rank["no_sync"]["bytes"] == 8 * r["params"]
    assert acc.grad_gap(rank["no_sync"]["grad"], r["single_grad"]) < 1e-13


def test_divide_by_the_global_count():
    """Under DDP each process must divide by the same number: divide_by overrides the local count."""
    model, batch = _mlp(), _data()
    big = _grad(model, batch, 1)
    # dividing by twice the count halves the gradient; the default is the local count
    assert torch.allclose(_grad(model, batch, 4, divide_by=48), big / 2, rtol=1e-12, atol=0)
    assert acc.grad_gap(_grad(model, batch, 4, divide_by=24), big) < 1e-13
    with pytest.raises(ValueError, match="divide_by"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, normalize="sum", divide_by=3)
    with pytest.raises(ValueError, match="positive"):
        acc.accumulate_step(model, acc.cross_entropy_sum, batch, 2, divide_by=0)
