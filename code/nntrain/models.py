"""Small reusable models for the whole book: an MLP, a GPT-2-style transformer and a Llama-like one.

Chapter 3 (memory) builds the GPT-2 family on the ``meta`` device to count parameters exactly and to
estimate memory without allocating it; later chapters (Muon, mixed precision, checkpointing) train
small configurations of the same classes. The code follows the structure of GPT-2 (Radford et al.,
2019) as written in nanoGPT, and of Llama (Touvron et al., arXiv 2302.13971).

    with torch.device("meta"):
        model = GPT(GPT_PRESETS["gpt2-xl"])      # no memory is allocated
    count_params(model)                          # 1557611200
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_positive_int

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_KINDS",
    "GPT",
    "GPTConfig",
    "GPT_PRESETS",
    "LLAMA_PRESETS",
    "Llama",
    "LlamaConfig",
    "PRESETS",
    "RMSNorm",
    "build",
    "count_params",
    "gpt_param_count",
    "llama_param_count",
    "mlp",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}

# "sdpa": F.scaled_dot_product_attention (fused kernels keep no s×s matrix for backward);
# "math": the explicit softmax(QKᵀ/√d)V, which saves the s×s scores (Korthikanti's 5as²b term).
ATTENTION_KINDS = ("sdpa", "math")


def mlp(sizes: list[int], activation: str = "relu", bias: bool = True,
        seed: int | None = None) -> nn.Sequential:
    """Linear → activation → … → Linear; ``sizes = [in, hidden..., out]`` (no activation at the end).

    With ``seed`` the global torch generator is seeded first (``torch.manual_seed(seed)``), so one
    seed gives one initial network: the chapters build their reference perceptron this way.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {sizes!r}")
    for s in sizes:
        check_positive_int("every size", s)
    check_choice("activation", activation, ACTIVATIONS)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; tied weights (GPT-2's embedding = output layer) are counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------- GPT-2


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2-style decoder: the defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        check_choice("attention", self.attention, ATTENTION_KINDS)

    def with_(self, **changes) -> "GPTConfig":
        """A copy with some fields changed: ``GPT_PRESETS["gpt2"].with_(n_layer=2)``."""
        return replace(self, **changes)


GPT_PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 355M
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # 1.5B
}


def gpt_param_count(cfg: GPTConfig) -> int:
    """Closed form: V·h + S·h + L·(12h² + 13h) + 2h with biases (embedding tied to the output layer)."""
    h, L = cfg.n_embd, cfg.n_layer
    per_layer = 12 * h * h + (13 * h if cfg.bias else 2 * h)
    return cfg.vocab_size * h + cfg.block_size * h + L * per_layer + (2 * h if cfg.bias else h)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; ``config.attention`` picks the fused or the explicit kernel."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attention = config.attention
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.attention == "math":
            # An additive mask (0 / -inf): adding it saves nothing for backward, unlike masked_fill.
            mask = torch.full((config.block_size, config.block_size), float("-inf")).triu(1)
            self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if self.attention == "sdpa":
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att + self.mask[:T, :T].to(att.dtype)
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class GPTMLP(nn.Module):
    """h → 4h → GELU (tanh approximation, as in GPT-2) → h → dropout."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer layer: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = GPTMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2: token + position embeddings, n_layer blocks, final LayerNorm, output layer tied to wte."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Return ``(logits, loss)``; ``loss`` is the mean cross-entropy, or None without targets."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, seq), got {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss


# ----------------------------------------------------------------------------------------- Llama


@dataclass(frozen=True)
class LlamaConfig:
    """A Llama-like decoder: RMSNorm, SwiGLU, rotary embeddings, no biases, optional grouped KV heads."""

    vocab_size: int = 32000
    block_size: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int = 32
    n_embd: int = 4096
    intermediate_size: int = 11008
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size"):
            check_positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd={self.n_embd} must split into n_head={self.n_head} heads of even size")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")

    def with_(self, **changes) -> "LlamaConfig":
        return replace(self, **changes)


LLAMA_PRESETS: dict[str, LlamaConfig] = {
    "llama2-7b": LlamaConfig(),  # 6,738,415,616 parameters
    "llama-tiny": LlamaConfig(
        vocab_size=512, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, intermediate_size=344
    ),
}

PRESETS: dict[str, Union[GPTConfig, LlamaConfig]] = {**GPT_PRESETS, **LLAMA_PRESETS}


def llama_param_count(cfg: LlamaConfig) -> int:
    """Closed form: embeddings, per layer 2h² + 2h·h_kv (attention) + 3·h·f (SwiGLU) + 2h (norms), final norm."""
    h, f = cfg.n_embd, cfg.intermediate_size
    h_kv = cfg.n_kv_head * (h // cfg.n_head)
    per_layer = 2 * h * h + 2 * h * h_kv + 3 * h * f + 2 * h
    emb = cfg.vocab_size * h * (1 if cfg.tie_embeddings else 2)
    return emb + cfg.n_layer * per_layer + h


class RMSNorm(nn.Module):
    """x / rms(x) · w, computed in float32 (Zhang & Sennrich, arXiv 1910.07467)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def _rope_tables(cfg: LlamaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    hs = cfg.n_embd // cfg.n_head
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs)
    angles = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32), inv_freq)  # (S, hs/2)
    return angles.cos(), angles.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i+d/2}) by position-dependent angles (Su et al., arXiv 2104.09864)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.hs = cfg.n_embd // cfg.n_head
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.wq = nn.Linear(cfg.n_embd, cfg.n_head * self.hs, bias=False)
        self.wk = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.hs, bias=False)
        self.wv = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.hs, bias=False)
        self.wo = nn.Linear(cfg.n_head * self.hs, cfg.n_embd, bias=False)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.w1 = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)  # gate
        self.w3 = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=False)  # up
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)  # down

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.n_head, self.hs).transpose(1, 2)
        k = self.wk(h).view(B, T, self.n_kv_head, self.hs).transpose(1, 2)
        v = self.wv(h).view(B, T, self.n_kv_head, self.hs).transpose(1, 2)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        if self.n_kv_head != self.n_head:
            rep = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, C))
        h = self.mlp_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    """A Llama-like decoder; ``forward(idx, targets=None) -> (logits, loss)`` like :class:`GPT`."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"Llama expects a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.embed.weight = self.lm_head.weight
        cos, sin = _rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, seq), got {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        x = self.embed(idx)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss


def build(config: Union[str, GPTConfig, LlamaConfig], device: Union[str, torch.device, None] = None) -> nn.Module:
    """A model from a preset name or a config; ``device="meta"`` builds it without allocating memory."""
    if isinstance(config, str):
        check_choice("model", config, PRESETS)
        config = PRESETS[config]
    if isinstance(config, GPTConfig):
        cls = GPT
    elif isinstance(config, LlamaConfig):
        cls = Llama
    else:
        raise TypeError(f"expected a preset name, GPTConfig or LlamaConfig, got {type(config).__name__}")
    if device is None:
        return cls(config)
    with torch.device(device):
        return cls(config)
