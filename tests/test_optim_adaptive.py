"""nntrain.optim: Adagrad, RMSprop, Adam and AdamW against their torch.optim twins in float64.

Chapter 2 (adaptive methods, AdamW). Every option combination runs 60 steps with two parameter
groups, a parameter whose gradient is None on every third step and a frozen parameter; then the
pure functions, the trajectory rules and ``state_dict`` (within ours and to and from torch) are
checked against the wrappers.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

import nntrain.functions as F
from nntrain import optim

STEPS = 60
SPLIT = 25  # where the state_dict tests save and reload


def _grid(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


GRIDS = {
    "Adagrad": _grid(lr=[0.1], lr_decay=[0.0, 0.05], initial_accumulator_value=[0.0, 0.3],
                     weight_decay=[0.0, 0.1], eps=[1e-10, 1e-2], maximize=[False, True]),
    "RMSprop": _grid(lr=[0.01], alpha=[0.99, 0.8], eps=[1e-8, 1e-2], momentum=[0.0, 0.9],
                     centered=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]),
    "Adam": _grid(lr=[0.02], betas=[(0.9, 0.999), (0.8, 0.95)], eps=[1e-8, 1e-2], weight_decay=[0.0, 0.1],
                  amsgrad=[False, True], maximize=[False, True]),
    "AdamW": _grid(lr=[0.02], betas=[(0.9, 0.999), (0.8, 0.95)], eps=[1e-8, 1e-2], weight_decay=[0.0, 0.1],
                   amsgrad=[False, True], maximize=[False, True]),
}
CASES = [(name, kw) for name, grid in GRIDS.items() for kw in grid]
TWINS = {name: (getattr(optim, name), getattr(torch.optim, name)) for name in GRIDS}


def _case_id(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


def _params(dtype=torch.float64):
    """w gets a gradient every step, c on two steps out of three, ``frozen`` never (requires_grad=False)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, generator=g, dtype=dtype).requires_grad_()
    c = torch.randn(3, generator=g, dtype=dtype).requires_grad_()
    frozen = torch.randn(2, generator=g, dtype=dtype)
    return [w, c, frozen]


def _data(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(20, 6, generator=g, dtype=dtype), torch.randn(20, 3, generator=g, dtype=dtype)


def _loss(params, k, maximize):
    """A smooth loss; the sign is flipped when maximizing, so both directions follow the same path."""
    w, c, frozen = params
    a, b = _data(w.dtype)
    out = a @ w + frozen.sum()
    if k % 3:  # c takes part on two steps out of three: on the others its .grad stays None
        out = out + c
    loss = ((out - b) ** 2).mean() + (w ** 4).mean()
    return -loss if maximize else loss


def _groups(params, kw):
    """Two groups: w and the frozen parameter with the main options, c with half the learning rate."""
    w, c, frozen = params
    return [{"params": [w, frozen]}, {"params": [c], "lr": kw["lr"] / 2}]


def _train(opt, params, kw, start, stop):
    for k in range(start, stop):
        opt.zero_grad(set_to_none=True)
        _loss(params, k, kw.get("maximize", False)).backward()
        opt.step()


def _run(cls, kw, steps=STEPS, **extra):
    params = _params()
    opt = cls(_groups(params, kw), **kw, **extra)
    _train(opt, params, kw, 0, steps)
    return [p.detach().clone() for p in params], opt


def _max_abs_diff(xs, ys):
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(xs, ys))


# ---------------------------------------------------------------- twins in float64, every option


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_wrapper_matches_torch_for_every_option(case):
    name, kw = case
    ours_cls, torch_cls = TWINS[name]
    ours, _ = _run(ours_cls, kw)
    ref, _ = _run(torch_cls, kw)
    ref_foreach, _ = _run(torch_cls, kw, foreach=True)
    for x, y, z in zip(ours, ref, ref_foreach):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(x, z, rtol=1e-12, atol=1e-13)
    assert torch.equal(ours[2], _params()[2])  # the frozen parameter never moves
    assert _max_abs_diff(ours[:2], _params()[:2]) > 1e-3  # the others do: the agreement is not trivial


def test_mixed_dtypes_in_one_group_match_torch():
    """float32 and float64 tensors in one group go to separate foreach calls, as in torch."""
    for name, (ours_cls, torch_cls) in TWINS.items():
        kw = GRIDS[name][-1]
        outs = []
        for cls in (ours_cls, torch_cls):
            a = torch.linspace(-1, 1, 5, dtype=torch.float32).requires_grad_()
            b = torch.linspace(-2, 1, 4, dtype=torch.float64).requires_grad_()
            opt = cls([a, b], **kw)
            for _ in range(20):
                opt.zero_grad()
                ((a ** 4).sum() + (b ** 4).sum()).mul(-1.0 if kw["maximize"] else 1.0).backward()
                opt.step()
            outs.append((a.detach(), b.detach()))
        torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-12, atol=1e-13)


def test_state_keys_are_torchs():
    for name, kw in [("Adagrad", {}), ("RMSprop", dict(momentum=0.9, centered=True)), ("Adam", dict(amsgrad=True)),
                     ("AdamW", {})]:
        ours_cls, torch_cls = TWINS[name]
        kw = {"lr": 0.01, **kw}
        _, ours = _run(ours_cls, kw, steps=3)
        _, ref = _run(torch_cls, kw, steps=3)
        w_ours, w_ref = ours.param_groups[0]["params"][0], ref.param_groups[0]["params"][0]
        assert set(ours.state[w_ours]) == set(ref.state[w_ref])
        assert ours.state[w_ours]["step"].dtype == ref.state[w_ref]["step"].dtype
        assert float(ours.state[w_ours]["step"]) == 3.0


# ---------------------------------------------------------------- state_dict


def _resumed(save_cls, load_cls, name, kw):
    """Run SPLIT steps with ``save_cls``, load its state_dict into a fresh ``load_cls``, finish the run."""
    params = _params()
    first = save_cls(_groups(params, kw), **kw)
    _train(first, params, kw, 0, SPLIT)
    saved = copy.deepcopy(first.state_dict())
    second = load_cls(_groups(params, kw), **kw)
    second.load_state_dict(saved)
    _train(second, params, kw, SPLIT, STEPS)
    return [p.detach() for p in params]


STATE_CASES = [(name, GRIDS[name][i]) for name in GRIDS for i in (0, len(GRIDS[name]) // 2 + 3, -1)]


@pytest.mark.parametrize("case", STATE_CASES, ids=_case_id)
def test_state_dict_round_trip_within_ours_is_exact(case):
    name, kw = case
    ours_cls = TWINS[name][0]
    straight, _ = _run(ours_cls, kw)
    for x, y in zip(_resumed(ours_cls, ours_cls, name, kw), straight):
        assert torch.equal(x, y)


@pytest.mark.parametrize("case", STATE_CASES, ids=_case_id)
def test_state_dict_moves_to_torch_and_back(case):
    name, kw = case
    ours_cls, torch_cls = TWINS[name]
    straight, _ = _run(ours_cls, kw)
    for direction in ((ours_cls, torch_cls), (torch_cls, ours_cls)):
        for x, y in zip(_resumed(*direction, name, kw), straight):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- pure functions and trajectory rules


PURE = {  # name -> (init, update, options of the check, the wrapper's options)
    "Adagrad": (lambda p: optim.adagrad_init(p, 0.3), optim.adagrad_update,
                dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, eps=1e-3), dict(initial_accumulator_value=0.3)),
    "RMSprop": (lambda p: optim.rmsprop_init(p, momentum=0.9, centered=True), optim.rmsprop_update,
                dict(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.9, centered=True), {}),
    "Adam": (lambda p: optim.adam_init(p, amsgrad=True), optim.adam_update,
             dict(lr=0.02, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1, amsgrad=True), {}),
    "AdamW": (lambda p: optim.adamw_init(p), optim.adamw_update, dict(lr=0.02, weight_decay=0.1), {}),
}


def _quartic_grad(x):
    return 4 * x ** 3 - 2 * x + 0.5


@pytest.mark.parametrize("name", list(PURE))
def test_pure_function_is_the_wrapper_bit_for_bit(name):
    init, update, kw, extra = PURE[name]
    x0 = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    x, state = x0.clone(), init(x0)
    for _ in range(STEPS):
        x, state = update(x, _quartic_grad(x), state, **kw)
    assert state.step == STEPS
    p = x0.clone().requires_grad_()
    opt_kw = {k: v for k, v in kw.items() if k != "decoupled"}
    if name == "Adam":
        opt_kw["decoupled_weight_decay"] = False
    opt = TWINS[name][0]([p], **opt_kw, **extra)
    for _ in range(STEPS):
        p.grad = _quartic_grad(p.detach())
        opt.step()
    assert torch.equal(x, p.detach())


@pytest.mark.parametrize("name", list(PURE))
def test_pure_function_does_not_modify_its_inputs(name):
    init, update, kw, _ = PURE[name]
    p = torch.linspace(-1, 1, 5, dtype=torch.float64)
    g = _quartic_grad(p)
    state = update(p, g, init(p), **kw)[1]  # a state with non-zero buffers
    before = (p.clone(), g.clone(), [t.clone() if isinstance(t, torch.Tensor) else t for t in state])
    new_p, new_state = update(p, g, state, **kw)
    assert torch.equal(p, before[0]) and torch.equal(g, before[1])
    for t, t0 in zip(state, before[2]):
        assert (torch.equal(t, t0) if isinstance(t, torch.Tensor) else t == t0)
    assert new_state.step == state.step + 1 and not torch.equal(new_p, p)


def test_adamw_spellings_are_adam_decoupled():
    p = torch.linspace(-1, 1, 5, dtype=torch.float64)
    g = _quartic_grad(p)
    a = optim.adamw_update(p, g, optim.adamw_init(p), lr=0.1)
    b = optim.adam_update(p, g, optim.adam_init(p), lr=0.1, weight_decay=1e-2, decoupled=True)
    assert torch.equal(a[0], b[0])
    w1 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    w2 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    o1, o2 = optim.AdamW([w1], lr=0.1), optim.Adam([w2], lr=0.1, weight_decay=1e-2, decoupled_weight_decay=True)
    for w, o in ((w1, o1), (w2, o2)):
        w.grad = torch.full_like(w, 0.3)
        o.step()
    assert torch.equal(w1, w2)


def test_first_adam_step_is_sign_descent():
    """Without weight decay Adam's first step is −lr·sign(g) (ε = 0): the ℓ∞ steepest descent."""
    p = torch.zeros(50, dtype=torch.float64)
    g = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    new_p, _ = optim.adam_update(p, g, optim.adam_init(p), lr=0.1, eps=0.0)
    torch.testing.assert_close(new_p, -0.1 * g.sign())


TRAJ = [  # (rule name, rule options, wrapper factory)
    ("sgd", dict(lr=1e-3, momentum=0.9, nesterov=True), lambda p: optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True)),
    ("adagrad", dict(lr=0.3, lr_decay=0.01, initial_accumulator_value=0.1),
     lambda p: optim.Adagrad(p, lr=0.3, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("rmsprop", dict(lr=1e-2, momentum=0.5, centered=True),
     lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5, centered=True)),
    ("adam", dict(lr=0.05, betas=(0.9, 0.99)), lambda p: optim.Adam(p, lr=0.05, betas=(0.9, 0.99))),
    ("adamw", dict(lr=0.05, weight_decay=0.1), lambda p: optim.AdamW(p, lr=0.05, weight_decay=0.1)),
    ("amsgrad", dict(lr=0.05), lambda p: optim.Adam(p, lr=0.05, amsgrad=True)),
]


@pytest.mark.parametrize("name,hyper,factory", TRAJ, ids=[t[0] for t in TRAJ])
def test_trajectory_rule_is_the_wrapper_on_rosenbrock(name, hyper, factory):
    fn = F.rosenbrock()
    pure = F.run(fn, [-1.2, 1.0], 200, update=optim.trajectory_rule(name, **hyper))
    wrapped = F.run(fn, [-1.2, 1.0], 200, optimizer=factory)
    assert torch.equal(pure.path, wrapped.path)
    assert (pure.path[-1] - pure.path[0]).norm() > 1e-2


def test_momentum_rules_are_the_heavy_ball():
    """gd is the heavy ball with β = 0; Nesterov is the heavy ball at the look-ahead point."""
    fn = F.levy()
    x0 = torch.tensor([-6.0, 4.0], dtype=torch.float64)
    gd = F.run(fn, x0, 100, update=optim.trajectory_rule("gd", alpha=0.01)).path
    assert torch.equal(gd[1], x0 - 0.01 * fn.grad(x0))
    x, v = x0.clone(), torch.zeros(2, dtype=torch.float64)
    nag = F.run(fn, x0, 100, update=optim.trajectory_rule("nesterov", alpha=0.01, beta=0.8)).path
    for k in range(100):
        x, v = optim.heavy_ball_update(x, v, fn.grad(x + 0.8 * v), lr=0.01, beta=0.8)
        assert torch.equal(nag[k + 1], x)
    ema = F.run(fn, x0, 100, update=optim.trajectory_rule("ema_momentum", alpha=0.05, beta=0.9)).path
    hb = F.run(fn, x0, 100, update=optim.trajectory_rule("heavy_ball", alpha=0.05 * 0.1, beta=0.9)).path
    torch.testing.assert_close(ema, hb, rtol=1e-10, atol=1e-12)


def test_momentum_rules_take_one_hyper_parameter_per_problem():
    """A batch of quadratics ½λx² with α = 1/λ per row: gradient descent lands on 0 in one step."""
    lam = torch.tensor([[1.0], [4.0], [10.0]], dtype=torch.float64)
    upd = optim.trajectory_rule("heavy_ball", alpha=1 / lam, beta=torch.zeros_like(lam))
    x, _ = upd(torch.ones(3, 2, dtype=torch.float64), lambda x: lam * x, None)
    assert torch.equal(x, torch.zeros(3, 2, dtype=torch.float64))
    x_new, v = optim.heavy_ball_update(torch.ones(3, 1), torch.zeros(3, 1), lam.float(), lr=1 / lam.float(),
                                       beta=torch.tensor([[0.0], [0.5], [0.9]]))
    assert x_new.shape == (3, 1) and torch.equal(x_new, torch.zeros(3, 1))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(TWINS))
def test_wrappers_refuse_bad_options(name):
    cls = TWINS[name][0]
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"lr.*-0\.1"):
        cls([p], lr=-0.1)
    with pytest.raises(ValueError, match="finite.*nan"):
        cls([p], lr=math.nan)
    with pytest.raises(TypeError, match="valid options are .*'lr'"):
        cls([p], foreach=True)
    with pytest.raises(TypeError, match="unknown option.*'nesterov'"):
        cls([{"params": [p], "nesterov": True}])
    with pytest.raises(TypeError, match="maximize must be True or False"):
        cls([p], maximize=1)
    with pytest.raises(ValueError, match="lr"):
        cls([p]).add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0})


@pytest.mark.parametrize("betas", [(0.9, 1.0), (-0.1, 0.9), (0.9,), (0.9, math.nan)])
def test_adam_refuses_bad_betas(betas):
    p = torch.zeros(3, requires_grad=True)
    for cls in (optim.Adam, optim.AdamW):
        with pytest.raises(ValueError, match="betas"):
            cls([p], betas=betas)
    with pytest.raises(ValueError, match="betas"):
        optim.adam_update(p.detach(), p.detach(), optim.adam_init(p), betas=betas)


def test_other_bad_values_name_themselves():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0.0, 1.0\], got 1.5"):
        optim.RMSprop([p], alpha=1.5)
    with pytest.raises(ValueError, match="eps.*-1"):
        optim.Adagrad([p], eps=-1.0)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optim.adagrad_init(p, -0.5)
    with pytest.raises(ValueError, match="momentum"):
        optim.RMSprop([p], momentum=-0.5)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW([p], weight_decay=-1e-2)
    with pytest.raises(TypeError, match="decouples"):
        optim.AdamW([p], decoupled_weight_decay=False)


@pytest.mark.parametrize("name", list(TWINS))
def test_sparse_gradient_is_refused(name):
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        TWINS[name][0](emb.parameters(), lr=0.1).step()


def test_pure_functions_check_their_state():
    p = torch.zeros(3)
    with pytest.raises(ValueError, match="momentum buffers"):
        optim.rmsprop_update(p, p, optim.rmsprop_init(p), momentum=0.9)
    with pytest.raises(ValueError, match="centered"):
        optim.rmsprop_update(p, p, optim.rmsprop_init(p), centered=True)
    with pytest.raises(ValueError, match="amsgrad"):
        optim.adam_update(p, p, optim.adam_init(p), amsgrad=True)
    with pytest.raises(ValueError, match="does not match"):
        optim.adagrad_update(p, p, optim.adagrad_init(torch.zeros(4)))
    with pytest.raises(ValueError, match="does not match"):
        optim.adam_update(p, p, optim.adam_init(torch.zeros(4)))
    with pytest.raises(ValueError, match="shape"):
        optim.adam_update(p, torch.zeros(4), optim.adam_init(p))


def test_trajectory_rule_refuses_unknown_names_and_options():
    with pytest.raises(ValueError, match="expected one of.*'adam'"):
        optim.trajectory_rule("lion", lr=0.1)
    with pytest.raises(TypeError, match="valid options are.*'betas'"):
        optim.trajectory_rule("adam", momentum=0.9)
    with pytest.raises(TypeError, match="valid options are.*'alpha'"):
        optim.trajectory_rule("heavy_ball", lr=0.1, beta=0.9)
    with pytest.raises(ValueError, match="betas"):
        optim.trajectory_rule("adam", betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="alpha"):
        optim.trajectory_rule("gd", alpha=-1.0)
    with pytest.raises(ValueError, match="learning rate"):
        optim.trajectory_rule("sgd", lr=-1.0)
