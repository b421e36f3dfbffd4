"""nntrain.memopt: the ledger entries and experiment helpers of chapter 4."""

import math
import sys

import numpy as np
import pytest
import torch

from nntrain import memopt, memory
from nntrain.models import GPT


def test_registered_in_the_ledger():
    assert "adafactor" in memory.OPTIMIZER_STATES and "adam8bit" in memory.OPTIMIZER_STATES
    assert memory.bytes_per_parameter("adam8bit", "mixed")["optimizer"] == 2
    # bytes_per_parameter measures one long vector, which Adafactor does not factor: 4 B/param;
    # for matrices the per-parameter cost is (n1 + n2)/(n1·n2)·4 — the ledger of a model shows it
    assert memory.bytes_per_parameter("adafactor", "mixed")["optimizer"] == 4
    xl = memory.ledger("gpt2-xl", "adafactor", "mixed")
    assert xl.optimizer_states / xl.n_params < 0.01
    # the formulas are memory's own (memopt re-exports them and registers nothing at import)
    assert memopt.adafactor_state_bytes is memory.adafactor_state_bytes
    assert memory.OPTIMIZER_STATES["adam8bit"] is memory.adam8bit_state_bytes


def test_state_byte_formulas():
    assert memopt.adafactor_state_bytes((4096, 1024)) == 5120 * 4 + 4
    assert memopt.adafactor_state_bytes((3, 5, 7)) == 3 * 12 * 4 + 4
    assert memopt.adafactor_state_bytes((10,)) == 44 and memopt.adafactor_state_bytes(()) == 8
    assert memopt.adam8bit_state_bytes((100,)) == 804
    assert memopt.adam8bit_state_bytes((4097,)) == 2 * 4097 + 8 * 17 + 4


def test_ledger_of_a_model_matches_measurement():
    cfg = memopt.lm_config(n_layer=1)
    model = GPT(cfg)
    shapes = [tuple(p.shape) for p in model.parameters()]
    for kind, extra in (("adafactor", 0), ("adam8bit", memopt.CODE_BOOK_BYTES)):
        opt = memopt.make_optimizer(kind, model.parameters(), 1e-3)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        assert memory.state_bytes(shapes, kind) + extra == memory.optimizer_state_bytes(opt)


def test_markov_entropy_matches_sampling():
    data = memopt.MarkovTokens(vocab=8, concentration=0.5, seed=1, order=1)
    x = data.sample(256, 200, torch.Generator().manual_seed(0))
    probs = data.table[x[:, 50:-1], x[:, 51:]]
    assert abs(float(-probs.log().mean()) - data.entropy_rate()) < 0.02
    d2 = memopt.MarkovTokens(vocab=4, concentration=1.0, seed=0, order=2)
    assert 0 < d2.entropy_rate() < math.log(4)
    with pytest.raises(ValueError):
        memopt.MarkovTokens(order=3)


def test_train_lm_and_errors_run():
    data = memopt.MarkovTokens(vocab=16, seed=0)
    cfg = memopt.lm_config(vocab=16, seq=8, n_layer=1, n_embd=64)
    run = memopt.train_lm("adam8bit", 1e-3, 0, data, cfg, steps=3, batch=4, val_batches=1, warmup=1)
    assert run.train_loss.shape == (3,) and np.isfinite(run.val_loss) and run.state_bytes > 0
    errs, states = memopt.shadow_errors(GPT(cfg), data, 3, batch=4)
    assert set(errs) == {"m", "v", "update", "v_zero"} and all(np.isfinite(v).all() for v in errs.values())
    out = memopt.block_size_errors(states, [64, None], memopt.dynamic_code(True), memopt.dynamic_code(False))
    assert len(out["m"]) == 2 and all(0 <= z <= 1 for z in out["v_zero"])
    times = memopt.step_times(["adam", "adafactor"], lambda: [_leaf()], repeat=2, warmup=1)
    assert set(times) == {"adam", "adafactor"}


def test_shadow_direction_is_the_step_taken():
    """Step 1 of 8-bit Adam divides float32 moments: its direction error is 0 (to rounding)."""
    data = memopt.MarkovTokens(vocab=16, seed=0)
    cfg = memopt.lm_config(vocab=16, seq=8, n_layer=1, n_embd=64)
    errs, states = memopt.shadow_errors(GPT(cfg), data, 4, batch=4)
    assert errs["update"][0] < 1e-5 and errs["update"][1] > errs["update"][0]
    m, v, g = next(s for s in states.values() if s[0].numel() >= 4096)
    assert g.shape == m.shape and float(g.abs().sum()) > 0


def test_block_size_errors_next_step_and_zero_point():
    """With the fresh gradient added, a v rounded to 0 is refilled by (1 − β₂)g²; without it the step
    divides by ε and the error explodes."""
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(64, 64, generator=g)
    m, v = 0.1 * grad, 1e-3 * grad ** 2
    v[0, 0] = 1e4 * float(v.max())  # one outlier pushes the rest of a tensor-wide scale to zero
    lin = (memopt.dynamic_code(True), torch.linspace(0, 1, 256))
    with_g = memopt.block_size_errors({"w": (m, v, grad)}, [None], *lin)
    no_g = memopt.block_size_errors({"w": (m, v)}, [None], *lin)
    assert with_g["v_zero"][0] > 0.5 and with_g["update"][0] < no_g["update"][0] / 100
    assert with_g["m"] == no_g["m"] and with_g["v"] == no_g["v"]


def _leaf():
    w = torch.randn(8, 8, requires_grad=True)
    w.grad = torch.randn(8, 8)
    return w


def test_unknown_kind_and_missing_bitsandbytes(monkeypatch):
    with pytest.raises(ValueError, match="optimizer kind"):
        memopt.make_optimizer("sgd", [_leaf()], 1e-3)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    assert not memopt.bnb_available()
    with pytest.raises(ImportError, match="pip install bitsandbytes"):
        memopt.make_optimizer("bnb8bit", [_leaf()], 1e-3)
