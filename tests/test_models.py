"""nntrain.models: the MLP, GPT-2 and Llama-like models (chapter 3 counts them, later chapters train them)."""

import pytest
import torch
from torch import nn

from nntrain.models import (
    GPT,
    GPT_PRESETS,
    LLAMA_PRESETS,
    PRESETS,
    GPTConfig,
    Llama,
    LlamaConfig,
    build,
    count_params,
    gpt_param_count,
    llama_param_count,
    mlp,
)

# Exact sizes of the released GPT-2 checkpoints (embedding tied to the output layer) and of Llama 2 7B.
KNOWN = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama2-7b": 6_738_415_616,
}

TINY = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_family_parameter_counts_on_meta(name):
    model = build(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_params(model) == KNOWN[name]
    cfg = PRESETS[name]
    closed = gpt_param_count(cfg) if isinstance(cfg, GPTConfig) else llama_param_count(cfg)
    assert closed == KNOWN[name]


def test_meta_context_manager_and_rounded_sizes():
    with torch.device("meta"):
        model = GPT(GPT_PRESETS["gpt2"])
    assert model.lm_head.weight is model.transformer.wte.weight
    rounded = {n: round(count_params(build(n, "meta")) / 1e6) for n in GPT_PRESETS}
    assert rounded == {"gpt2": 124, "gpt2-medium": 355, "gpt2-large": 774, "gpt2-xl": 1558}


@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_without_bias(bias):
    cfg = TINY.with_(bias=bias)
    assert count_params(GPT(cfg)) == gpt_param_count(cfg)


def test_llama_tiny_counts_and_runs():
    cfg = LLAMA_PRESETS["llama-tiny"]
    model = Llama(cfg)
    assert count_params(model) == llama_param_count(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 16, cfg.vocab_size) and loss.ndim == 0
    loss.backward()
    tied = LlamaConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                       intermediate_size=32, tie_embeddings=True)
    assert count_params(Llama(tied)) == llama_param_count(tied)


def test_gpt_forward_shapes_and_loss_at_init():
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.randint(0, TINY.vocab_size, (3, 20))
    logits, loss = model(idx)
    assert logits.shape == (3, 20, TINY.vocab_size) and loss is None
    targets = torch.randint(0, TINY.vocab_size, (3, 20))
    _, loss = model(idx, targets)
    # Small init: predictions are nearly uniform, so the loss is close to log V.
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.1


def test_math_attention_equals_sdpa():
    torch.manual_seed(0)
    a = GPT(TINY.with_(attention="sdpa")).double()
    b = GPT(TINY.with_(attention="math")).double()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, TINY.vocab_size, (2, 17))
    la, lb = a(idx)[0], b(idx)[0]
    assert torch.allclose(la, lb, atol=1e-12)


def test_causality():
    torch.manual_seed(0)
    model = GPT(TINY.with_(attention="math")).eval()
    idx = torch.randint(0, TINY.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % TINY.vocab_size
    assert torch.allclose(model(idx)[0][:, :-1], model(changed)[0][:, :-1])


def test_mlp_shapes_and_errors():
    net = mlp([4, 8, 8, 3], activation="tanh")
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert net(torch.zeros(5, 4)).shape == (5, 3)
    assert count_params(mlp([4, 3], bias=False)) == 12
    with pytest.raises(ValueError, match="expected one of"):
        mlp([4, 3], activation="swish")
    with pytest.raises(ValueError, match="at least"):
        mlp([4])
    with pytest.raises(ValueError, match="positive int"):
        mlp([4, 0])


def test_config_and_build_errors():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match=r"expected one of \['math', 'sdpa'\]"):
        GPTConfig(attention="flash")
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.5)
    with pytest.raises(ValueError, match="gpt2-xl"):
        build("gpt5")
    with pytest.raises(TypeError, match="GPTConfig"):
        build(42)
    with pytest.raises(TypeError):
        GPT(LLAMA_PRESETS["llama-tiny"])
    with pytest.raises(ValueError, match="block_size"):
        GPT(TINY)(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple"):
        LlamaConfig(n_head=4, n_kv_head=3, n_embd=32)


def test_mlp_seed_builds_the_same_network_as_seeding_by_hand():
    # chapters 2 and 7 used to seed by hand and stack the layers themselves
    torch.manual_seed(0)
    by_hand = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                            nn.Linear(128, 10))
    net = mlp([64, 128, 128, 10], seed=0)
    assert list(net.state_dict()) == list(by_hand.state_dict())  # same module names ("4" = logits)
    for a, b in zip(net.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    assert all(torch.equal(a, b) for a, b in zip(mlp([64, 128, 10], seed=0).parameters(),
                                                   small.parameters()))
    assert not torch.equal(mlp([64, 10], seed=1)[0].weight, mlp([64, 10], seed=0)[0].weight)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_mlp_rejects_a_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        mlp([4, 2], seed=seed)
