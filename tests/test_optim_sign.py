"""Sign descent (chapter 11): the rule, the wrapper against the loop it replaced, bad input."""

import math

import pytest
import torch

from nntrain import imbalance, optim
from nntrain.optim import SIGN_OPTIONS, SignDescent, check_sign_options, sign_step_, sign_update


class _LoopSignDescent(torch.optim.Optimizer):
    """The per-parameter loop that ``nntrain.imbalance.SignDescent`` was before it moved to
    ``nntrain.optim`` (kept verbatim as the reference of the bit-for-bit test)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": float(lr)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])
        return loss


def _bits(t: torch.Tensor) -> bytes:
    return bytes(t.detach().reshape(-1).contiguous().view(torch.uint8).numpy())


def _mlp(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(),
                               torch.nn.Linear(6, 3)).to(dtype)


def _trajectory(make, kind: str) -> list[torch.Tensor]:
    """Every parameter (and the closure's loss) after each of 5 steps of ``make(params, lr)``."""
    out = []
    g = torch.Generator().manual_seed(1)
    if kind in ("float32", "float64", "closure"):
        dtype = torch.float64 if kind == "float64" else torch.float32
        net = _mlp(dtype)
        x, y = torch.randn(16, 4, generator=g).to(dtype), torch.randint(3, (16,), generator=g)
        opt = make(net.parameters(), lr=0.05)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            return loss

        for _ in range(5):
            if kind == "closure":
                out.append(opt.step(closure).detach().clone())
            else:
                closure()
                opt.step()
            out += [p.detach().clone() for p in net.parameters()]
    elif kind == "groups":  # two rates (one given as an int), a parameter that never gets a grad
        net = _mlp(torch.float32)
        x, y = torch.randn(16, 4, generator=g), torch.randint(3, (16,), generator=g)
        frozen = torch.nn.Parameter(torch.ones(3))
        opt = make([{"params": [net[0].weight, frozen]},
                    {"params": [net[0].bias, net[2].weight, net[2].bias], "lr": 1}], lr=0.01)
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            out += [p.detach().clone() for p in (*net.parameters(), frozen)]
    else:  # mixed dtypes in one group, zeros of both signs, gradients that underflow
        torch.manual_seed(3)
        ps = [torch.nn.Parameter(torch.randn(5, dtype=d)) for d in
              (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.float32)]
        ps.append(torch.nn.Parameter(torch.tensor([-0.0, 0.0, -0.0, 0.0, 1.0])))
        opt = make(ps, lr=0.3)
        for k in range(5):
            for i, p in enumerate(ps[:-1]):
                grad = torch.randn(5, dtype=torch.float64, generator=g)
                grad[k], grad[(k + 1) % 5] = 0.0, -0.0
                p.grad = (grad * 1e-300 if i == 4 else grad).to(p.dtype)
            ps[-1].grad = torch.tensor([0.0, -0.0, -0.0, 0.0, -0.0])
            opt.step()
            out += [p.detach().clone() for p in ps]
    return out


@pytest.mark.parametrize("kind", ["float32", "float64", "closure", "groups", "dtypes"])
def test_sign_descent_matches_the_loop_it_replaced_bit_for_bit(kind):
    new, old = _trajectory(SignDescent, kind), _trajectory(_LoopSignDescent, kind)
    assert len(new) == len(old) > 0
    for a, b in zip(new, old):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert _bits(a) == _bits(b)
    assert any(not torch.equal(a, b) for a, b in zip(new, new[len(new) // 5:]))  # it moved


def test_imbalance_keeps_the_name_and_uses_it():
    assert imbalance.SignDescent is SignDescent is optim.SignDescent
    p = torch.nn.Parameter(torch.zeros(2))
    assert type(imbalance.make_optimizer("sign", [p], 0.1)) is SignDescent


def test_sign_update_is_the_formula_and_pure():
    torch.manual_seed(0)
    x, g = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    g[0, 0] = 0.0
    x0, g0 = x.clone(), g.clone()
    new = sign_update(x, g, lr=0.25)
    assert torch.equal(new, x - 0.25 * torch.sign(g))
    assert new[0, 0] == x[0, 0]
    assert torch.equal(x, x0) and torch.equal(g, g0)


def test_sign_step_writes_params_only():
    p, q = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([[3.0]], dtype=torch.float64)
    gp, gq = torch.tensor([3.0, -1e-6, 0.0]), torch.tensor([[-7.0]], dtype=torch.float64)
    gp0, gq0 = gp.clone(), gq.clone()
    sign_step_([p, q], [gp, gq], lr=0.5)
    assert p.tolist() == [0.5, -1.5, 0.5] and q.item() == 3.5
    assert torch.equal(gp, gp0) and torch.equal(gq, gq0)
    sign_step_([], [], lr=0.5)  # nothing to do


def test_sign_descent_state_dict_has_only_the_rate():
    p = torch.nn.Parameter(torch.ones(3))
    opt = SignDescent([p], lr=torch.tensor(0.5))
    p.grad = torch.tensor([1.0, -1.0, 0.0])
    opt.step()
    sd = opt.state_dict()
    assert sd["state"] == {} and sd["param_groups"] == [{"lr": 0.5, "params": [0]}]
    other = SignDescent([p], lr=0.1)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.5
    assert check_sign_options(2) == {"lr": 2.0} and list(SIGN_OPTIONS) == ["lr"]


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf, -math.inf, torch.tensor([0.1, 0.2])])
def test_bad_rates_are_refused(lr):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr"):
        SignDescent([p], lr=lr)
    with pytest.raises(ValueError, match="lr"):
        sign_update(p.detach(), torch.ones(2), lr=lr)
    opt = SignDescent([p], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "lr": lr})


@pytest.mark.parametrize("lr", ["0.1", None, True, [0.1]])
def test_rates_that_are_not_numbers_are_refused(lr):
    with pytest.raises(TypeError, match="lr"):
        SignDescent([torch.nn.Parameter(torch.ones(2))], lr=lr)


def test_bad_calls_are_refused():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError):
        SignDescent([p])  # no default rate
    with pytest.raises(TypeError, match="unknown option"):
        SignDescent([p], lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="unknown option"):
        SignDescent([p], lr=0.1).add_param_group({"params": [torch.ones(1)], "betas": (0, 0)})
    with pytest.raises(ValueError, match="same length"):
        sign_step_([p.detach()], [], lr=0.1)
    with pytest.raises(ValueError, match="does not match"):
        sign_step_([torch.ones(2)], [torch.ones(3)], lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        sign_update(torch.ones(2), torch.ones(3), lr=0.1)
    with pytest.raises(TypeError, match="tensors"):
        sign_update([1.0, 2.0], torch.ones(2), lr=0.1)
    with pytest.raises(ValueError, match="complex"):
        sign_step_([torch.ones(2, dtype=torch.complex64)], [torch.ones(2, dtype=torch.complex64)],
                   lr=0.1)
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 3])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        SignDescent(emb.parameters(), lr=0.1).step()
