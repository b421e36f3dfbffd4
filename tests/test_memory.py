"""nntrain.memory: the ledger of a training step against what autograd and torch.optim really keep."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nntrain import memory
from nntrain.memory import (
    Precision,
    SavedTensors,
    bytes_per_parameter,
    cuda_peak_step,
    estimate_activation_bytes,
    gpt_activation_terms,
    ledger,
    llama_activation_terms,
    optimizer_state_bytes,
    register_optimizer,
    register_precision,
    simulate_step,
    state_bytes,
    transformer_layer_terms,
    zero_stage_bytes,
)
from nntrain.models import GPT, GPTConfig, Llama, LlamaConfig, count_params, mlp

SMALL = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64)


def _gpt_saved(cfg, dtype, batch=3, seq=64):
    torch.manual_seed(0)
    model = GPT(cfg).to(dtype)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq))
    targets = torch.randint(0, cfg.vocab_size, (batch, seq))
    with SavedTensors(model) as saved:
        model(idx, targets)
    return model, saved


# ---------------------------------------------------------------------------- bytes per parameter


def test_mixed_precision_adam_is_16_bytes():
    per = bytes_per_parameter("adam", "mixed")
    assert per == {"weights": 2, "grads": 2, "master": 4, "optimizer": 8}
    assert sum(per.values()) == 16
    assert per["master"] + per["optimizer"] == 12  # ZeRO's K


@pytest.mark.parametrize("opt, prec, total", [("sgd", "fp32", 8), ("momentum", "fp32", 12), ("adam", "fp32", 16),
                                              ("adamw", "mixed", 16), ("sgd", "mixed", 8), ("adam", "bf16", 8),
                                              ("adam", "amp", 16)])
def test_bytes_per_parameter_table(opt, prec, total):
    assert sum(bytes_per_parameter(opt, prec).values()) == total


def test_zero_paper_numbers():
    psi = count_params(memory.build("gpt2-xl", "meta"))
    led = ledger("gpt2-xl", "adam", "mixed", batch=32, seq=1024)
    assert led.n_params == psi
    assert 3.0e9 < led.weights < 3.2e9  # "3 GB of fp16 weights"
    n_tensors = len(list(memory.build("gpt2-xl", "meta").parameters()))
    assert led.model_states == 16 * psi + 4 * n_tensors  # + torch's scalar `step` per tensor
    assert 16 * psi >= 24e9  # "at least 24 GB of model states"
    gb = [zero_stage_bytes(7.5e9, 64, st) / 1e9 for st in range(4)]
    assert [round(x, 1) for x in gb] == [120.0, 31.4, 16.6, 1.9]


# ---------------------------------------------------------------------------- Korthikanti


def test_korthikanti_formula_term_by_term():
    s, b, h, a = 128, 2, 64, 4
    terms = transformer_layer_terms(s, b, h, a, act_bytes=2, dropout=True, attention="math", mask_bytes=1)
    paper = sum(v for k, v in terms.items() if "LayerNorm statistics" not in k)
    assert paper == s * b * h * (34 + 5 * a * s // h)
    # the paper's three groups (section 4.1): attention 11sbh + 5as²b, MLP 19sbh, the two LayerNorm inputs 4sbh
    sbh, as2b = s * b * h, a * s * s * b
    groups = {"attention": 0, "mlp": 0, "layernorm": 0}
    for k, v in terms.items():
        if k.startswith("LN"):
            groups["layernorm"] += v
        elif k.startswith(("MLP", "GeLU")):
            groups["mlp"] += v
        elif "LayerNorm statistics" not in k:
            groups["attention"] += v
    assert groups == {"attention": 11 * sbh + 5 * as2b, "mlp": 19 * sbh, "layernorm": 4 * sbh}
    sdpa = transformer_layer_terms(s, b, h, a, 2, True, "sdpa", 1, ln_stat_bytes=0)
    assert sum(sdpa.values()) == 34 * s * b * h + 4 * a * s * b  # no s² term, only the logsumexp


@pytest.mark.parametrize("attention, dropout, dtype, precision", [
    ("math", 0.1, torch.bfloat16, "bf16"),
    ("math", 0.0, torch.bfloat16, "bf16"),
    ("math", 0.1, torch.float32, "fp32"),
    ("sdpa", 0.0, torch.bfloat16, "bf16"),
    ("sdpa", 0.0, torch.float32, "fp32"),
])
def test_ledger_agrees_with_saved_tensors_on_a_transformer(attention, dropout, dtype, precision):
    cfg = SMALL.with_(attention=attention, dropout=dropout)
    model, saved = _gpt_saved(cfg, dtype)
    led = ledger(model, "adam", precision, batch=3, seq=64, target="cpu")
    assert abs(led.activations / saved.activation_bytes - 1) < 0.05
    assert abs(led.activations / saved.activation_bytes - 1) < 0.01  # in fact much closer
    assert saved.parameter_bytes > 0


def test_ledger_agrees_with_saved_tensors_on_an_mlp():
    torch.manual_seed(0)
    net = mlp([32, 128, 128, 10], activation="gelu")
    x = torch.randn(16, 32)
    with SavedTensors(net) as saved:
        net(x)
    led = ledger(net, "sgd", "fp32", batch=16, example_input=x, target="cpu")
    assert abs(led.activations / saved.activation_bytes - 1) < 0.05
    assert led.activations == saved.activation_bytes
    with pytest.raises(ValueError, match="no activation rule"):
        estimate_activation_bytes(nn.Sequential(nn.Conv1d(2, 2, 3)), torch.zeros(1, 2, 8))


@pytest.mark.parametrize("dtype, ab", [(torch.float32, 4), (torch.bfloat16, 2)])
@pytest.mark.parametrize("kv", [4, 2])
def test_llama_formula_agrees_with_saved_tensors(dtype, ab, kv):
    cfg = LlamaConfig(vocab_size=128, block_size=64, n_layer=2, n_head=4, n_kv_head=kv, n_embd=64, intermediate_size=96)
    torch.manual_seed(0)
    model = Llama(cfg).to(dtype)
    idx = torch.randint(0, 128, (2, 48))
    with SavedTensors(model) as saved:
        model(idx, torch.randint(0, 128, (2, 48)))
    predicted = sum(llama_activation_terms(cfg, 2, 48, ab).values())
    assert abs(predicted / saved.activation_bytes - 1) < 0.05


def test_checkpointing_and_accumulation_reduce_activations():
    cfg = GPTConfig(n_layer=12, n_head=12, n_embd=768, dropout=0.1, attention="math")
    none = sum(gpt_activation_terms(cfg, 8, 1024).values())
    sel = sum(gpt_activation_terms(cfg, 8, 1024, checkpointing="selective").values())
    full = sum(gpt_activation_terms(cfg, 8, 1024, checkpointing="full").values())
    assert full < sel < none
    a = ledger(cfg, batch=8, seq=1024)
    b = ledger(cfg, batch=8, seq=1024, micro_batch=2)
    assert b.activations < a.activations
    # 16-bit gradients are summed in an fp32 buffer: 4 more bytes per parameter
    assert b.model_states == a.model_states + 4 * a.n_params == b.model_states
    with pytest.raises(ValueError, match="multiple"):
        ledger(cfg, batch=8, seq=1024, micro_batch=3)


# ---------------------------------------------------------------------------- SavedTensors


def test_saved_tensors_deduplicates_storages():
    x = torch.randn(10, 20, requires_grad=True)
    with SavedTensors() as saved:
        y = x.exp()  # saves its result y
        z = (y * y).sum()  # saves y twice more
        w = (y.t() @ torch.ones(10, 3)).sum()  # saves a view of y (and the ones)
        v = x.sin().sum()  # saves the leaf x: a parameter, not an activation
    assert saved.n_saves >= 5
    big = [r for r in saved.records if r.nbytes == 10 * 20 * 4]
    assert sorted(r.kind for r in big) == ["activation", "parameter"]
    assert saved.activation_bytes == 10 * 20 * 4 + 10 * 3 * 4
    assert saved.parameter_bytes == 10 * 20 * 4
    (z + w + v).backward()
    assert x.grad is not None


def test_saved_tensors_parameters_listed_separately_and_by_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    with SavedTensors(net) as saved:
        net(x).sum().backward()
    # Linear 0 saves x, ReLU saves its output, Linear 2 saves the same output: 2 activation storages.
    assert saved.activation_bytes == (5 * 8 + 5 * 16) * 4
    assert saved.parameter_bytes == 16 * 4 * 4  # the second Linear saves its weight (for the input gradient)
    assert saved.by_module() == {"0": 5 * 8 * 4, "1": 5 * 16 * 4}
    assert "activations:" in saved.table()


def test_saved_tensors_works_on_meta():
    with torch.device("meta"):
        model = GPT(SMALL.with_(attention="math"))
        idx = torch.zeros(2, 32, dtype=torch.long)
    with SavedTensors(model) as saved:
        model(idx, idx)
    assert saved.activation_bytes > 0 and len(saved.records) > 10


def test_saved_tensors_errors():
    with pytest.raises(TypeError, match="nn.Module"):
        SavedTensors(model="gpt2")


# ---------------------------------------------------------------------------- optimizer states


@pytest.mark.parametrize("name, make", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("adam", lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("adamw", lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1)),
])
def test_state_bytes_match_a_real_optimizer(name, make):
    torch.manual_seed(0)
    model = GPT(SMALL)
    opt = make(model.parameters())
    idx = torch.randint(0, 256, (2, 16))
    model(idx, idx)[1].backward()
    opt.step()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert optimizer_state_bytes(opt) == state_bytes(shapes, name, 4)
    assert ledger(model, name, "fp32").optimizer_states == optimizer_state_bytes(opt)


def test_register_optimizer_and_precision():
    register_optimizer("adafactor-test", lambda shape, nb: (sum(shape) if len(shape) == 2 else shape[0]) * nb)
    try:
        assert state_bytes([(10, 20), (5,)], "adafactor-test") == (30 + 5) * 4
        with pytest.raises(ValueError, match="already registered"):
            register_optimizer("adafactor-test", lambda shape, nb: 0)
    finally:
        memory.OPTIMIZER_STATES.pop("adafactor-test")
    register_precision("fp8-test", Precision(1, 1, 4, 4, 1))
    try:
        assert sum(bytes_per_parameter("adam", "fp8-test").values()) == 14
    finally:
        memory.PRECISIONS.pop("fp8-test")


# ---------------------------------------------------------------------------- timeline


def test_simulated_timeline_of_a_step():
    torch.manual_seed(0)
    net = mlp([16, 64, 64, 4])
    x = torch.randn(32, 16)
    with SavedTensors(net) as saved:
        F.cross_entropy(net(x), torch.randint(0, 4, (32,))).backward()
    points = simulate_step(saved, net, "adam")
    acts = [p.activations for p in points]
    peak_fwd = max(range(len(points)), key=lambda i: acts[i])
    assert points[peak_fwd].phase == "forward" and acts[peak_fwd] == saved.activation_bytes
    assert points[-3].activations == 0 and points[-3].grads == sum(p.numel() * 4 for p in net.parameters())
    assert points[-2].states == state_bytes([tuple(p.shape) for p in net.parameters()], "adam")
    assert points[-1].grads == 0
    with pytest.raises(ValueError, match="for this model"):
        simulate_step(saved, mlp([2, 2]))


# ---------------------------------------------------------------------------- errors and the table


def test_ledger_errors_list_valid_options():
    with pytest.raises(ValueError, match=r"expected one of \['adafactor', 'adam', 'adam8bit', 'adamw', 'momentum', 'sgd'"):
        ledger("gpt2", optimizer="lion")
    with pytest.raises(ValueError, match="'mixed'"):
        ledger("gpt2", precision="fp64")
    with pytest.raises(ValueError, match="gpt2-xl"):
        ledger("gpt-5")
    with pytest.raises(ValueError, match="block_size"):
        ledger("gpt2", seq=4096)
    with pytest.raises(ValueError, match="positive int"):
        ledger("gpt2", batch=0)
    with pytest.raises(TypeError):
        ledger(42)
    with pytest.raises(ValueError, match="unit"):
        memory.format_bytes(10, "PB")


def test_ledger_table_and_dict():
    led = ledger("gpt2", "adam", "mixed", batch=4, seq=512)
    d = led.as_dict()
    assert d["total"] == d["model_states"] + d["activations"]
    text = led.table(terms=True, lang="en")
    assert "124,439,808 parameters" in text and "optimizer states" in text and "16.0 B/param" in text
    assert "logits gradient" in text  # listed, but not in the total
    ru = led.table(terms=True)
    assert "124,439,808 параметров" in ru and "состояния оптимизатора" in ru and "16.0 Б/параметр" in ru
    assert "слои: 12 × один слой" in ru and "не входит в итог" in ru
    assert max(len(line) for line in ru.splitlines()) <= 60
    assert str(led) == led.table()
    assert memory.label("layers: 48 × per-layer") == "слои: 48 × один слой"
    with pytest.raises(ValueError, match="lang"):
        led.table(lang="de")


def test_every_term_has_a_russian_label():
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=64, dropout=0.1, attention="math")
    keys = set()
    for prec in ["mixed", "amp", "fp32"]:
        for ck in ["none", "full"]:
            keys |= set(ledger(cfg, "adam", prec, batch=2, seq=64, checkpointing=ck).activation_terms)
    keys |= set(transformer_layer_terms(64, 2, 64, 4, 2, False, "math", 1, 4, 4, 4))
    keys |= set(transformer_layer_terms(64, 2, 64, 4, 2, False, "sdpa"))
    keys |= set(llama_activation_terms(LlamaConfig(n_layer=1, n_embd=64, n_head=4, n_kv_head=4), 1, 16))
    keys |= {"logits gradient (s·b·V)", "saved by modules (rules)"}
    for k in keys:
        assert memory.label(k) != k or k == "V", k


def test_saved_tensors_table_in_russian():
    net = mlp([4, 8, 2])
    with SavedTensors(net) as saved:
        net(torch.randn(3, 4))
    assert "активация" in saved.table(lang="ru") and "activation" in saved.table()


# ---------------------------------------------------------------------------- what total leaves out


def test_logits_gradient_is_listed_outside_the_total():
    led = ledger("gpt2", "adam", "mixed", batch=32, seq=1024)
    s_b_v = 32 * 1024 * 50257
    assert led.transients == {"logits gradient (s·b·V)": 2 * s_b_v}
    assert led.total == led.model_states + led.activations  # transients are not added
    amp = ledger("gpt2", "adam", "amp", batch=32, seq=1024)
    assert amp.transients["logits gradient (s·b·V)"] == 4 * s_b_v  # fp32 under autocast


# ---------------------------------------------------------------------------- gradient accumulation


def test_fp32_accumulation_buffer_makes_mixed_adam_20_bytes():
    n_tensors = len(list(memory.build("gpt2", "meta").parameters()))
    plain = ledger("gpt2", "adam", "mixed", batch=32, seq=1024)
    acc = ledger("gpt2", "adam", "mixed", batch=32, seq=1024, micro_batch=8)
    psi = plain.n_params
    assert plain.model_states == 16 * psi + 4 * n_tensors
    assert acc.accumulation == 4 * psi and acc.model_states == 20 * psi + 4 * n_tensors
    assert ledger("gpt2", "adam", "mixed", batch=32, seq=1024, micro_batch=8,
                  grad_accum_bytes=0).model_states == plain.model_states
    # fp32 gradients accumulate in .grad itself; one micro-batch = no accumulation
    assert ledger("gpt2", "adam", "fp32", batch=32, seq=1024, micro_batch=8).accumulation == 0
    assert ledger("gpt2", "adam", "mixed", batch=8, seq=1024, micro_batch=8).accumulation == 0
    with pytest.raises(ValueError, match="grad_accum_bytes"):
        ledger("gpt2", batch=4, micro_batch=2, grad_accum_bytes=-1)


# ---------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("attention, dropout", [("math", 0.1), ("math", 0.0), ("sdpa", 0.0)])
def test_amp_ledger_agrees_with_saved_tensors_under_cpu_autocast(attention, dropout):
    """CPU autocast: fp32 residual stream, LayerNorm and log-softmax, 16-bit matmul inputs and
    16-bit weight copies; the only tensor the ledger leaves out is the loss's fp32 scalar."""
    cfg = SMALL.with_(attention=attention, dropout=dropout)
    torch.manual_seed(0)
    model = GPT(cfg)
    idx, targets = torch.randint(0, 256, (3, 64)), torch.randint(0, 256, (3, 64))
    with SavedTensors(model) as saved:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(idx, targets)
    led = ledger(model, "adam", "amp", batch=3, seq=64, target="cpu")
    assert led.activations - saved.activation_bytes == -4
    copies = led.activation_terms["autocast: 16-bit copies of the weights"]
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert copies == 2 * linear


def test_cpu_autocast_op_lists_as_the_ledger_assumes():
    """CPU autocast leaves layer_norm, softmax and log_softmax alone (a bf16 input stays bf16) and
    runs the loss in fp32; LayerNorm on the fp32 residual stream saves its fp32 input, and the
    next Linear saves a 16-bit copy of the LayerNorm output, not the fp32 output itself."""
    x16, x32 = torch.randn(4, 8, dtype=torch.bfloat16), torch.randn(4, 8)
    t = torch.randint(0, 8, (4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.layer_norm(x16, (8,)).dtype == torch.bfloat16
        assert F.softmax(x16, -1).dtype == torch.bfloat16
        assert F.log_softmax(x16, -1).dtype == torch.bfloat16
        assert F.cross_entropy(x16, t).dtype == torch.float32
        assert F.nll_loss(x16, t).dtype == torch.float32
        ln, fc = nn.LayerNorm(8), nn.Linear(8, 8)
        x = torch.randn(4, 8, requires_grad=True) * 1.0  # fp32, not a leaf
        with SavedTensors(nn.Sequential(ln, fc)) as saved:
            fc(ln(x))
    acts = [(r.shape, r.dtype) for r in saved.records if r.kind == "activation"]
    assert ((4, 8), torch.float32) in acts  # the LayerNorm input
    assert ((4, 8), torch.bfloat16) in acts  # the Linear's 16-bit copy of the LayerNorm output
    assert sum(shape == (4, 8) for shape, _ in acts) == 2  # the fp32 LayerNorm output is not saved


def test_autocast_kernels_registered_where_the_ledger_assumes():
    """The dispatcher: layer_norm, softmax and log_softmax have an AutocastCUDA kernel (CUDA's
    fp32 list) and fall through on CPU; the CPU list has cross_entropy_loss and nll_loss."""
    dump = getattr(torch._C, "_dispatch_dump_table", None)
    if dump is None:
        pytest.skip("this torch has no _dispatch_dump_table")

    def entry(op, key):
        line = next(ln for ln in dump(op).splitlines() if ln.startswith(key + ":"))
        return "fallthrough" not in line

    for op in ["aten::layer_norm", "aten::softmax.int", "aten::log_softmax.int"]:
        assert entry(op, "AutocastCUDA") and not entry(op, "AutocastCPU")
    for op in ["aten::cross_entropy_loss", "aten::nll_loss"]:
        assert entry(op, "AutocastCPU")
    assert entry("aten::nll_loss", "AutocastCUDA")


def test_amp_on_cuda_keeps_fp32_softmax_and_a_16_bit_copy():
    s, b, h, a = 64, 2, 64, 4
    t = transformer_layer_terms(s, b, h, a, 2, True, "math", 1, 4, ln_input_bytes=4, softmax_bytes=4)
    sbh, as2b = s * b * h, a * s * s * b
    paper = sum(v for k, v in t.items() if "LayerNorm statistics" not in k)
    assert paper == 38 * sbh + 7 * as2b  # the exercise of the chapter: sbh(38 + 7as/h)
    no_drop = transformer_layer_terms(s, b, h, a, 2, False, "math", 1, 4, 4, 4)
    assert no_drop["16-bit copy of the softmax output (as²b)"] == 2 * as2b
    assert memory.PRECISIONS["amp"].weight_copies == 2 and memory.PRECISIONS["amp"].autocast
    with pytest.raises(ValueError, match="GPT configs only"):
        ledger("llama2-7b", "adam", "amp", batch=1, seq=16)


# ---------------------------------------------------------------------------- command line


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nntrain.memory", *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_the_table():
    out = _cli("--model", "gpt2-xl", "--batch", "32", "--seq", "1024", "--optimizer", "adam", "--precision", "mixed")
    assert out.returncode == 0, out.stderr
    assert "1,557,611,200 параметров" in out.stdout and "24.92 ГБ" in out.stdout
    en = _cli("--model", "gpt2", "--lang", "en")
    assert en.returncode == 0 and "124,439,808 parameters" in en.stdout


def test_cli_help():
    out = _cli("--help")
    assert out.returncode == 0
    for option in ("--model", "--batch", "--seq", "--optimizer", "--precision", "--target", "--checkpointing",
                   "--micro-batch", "--grad-accum-bytes", "--unit", "--terms", "--lang"):
        assert option in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt5"], "invalid choice: 'gpt5' (choose from 'gpt2', 'gpt2-large'"),
    (["--optimizer", "lion"], "choose from 'adafactor', 'adam', 'adam8bit', 'adamw', 'momentum', 'sgd'"),
    (["--precision", "fp64"], "choose from 'amp', 'bf16', 'fp32', 'mixed'"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--model", "gpt2", "--seq", "5000"], "block_size"),
    (["--batch", "6", "--micro-batch", "4"], "multiple"),
    (["--grad-accum-bytes", "-2"], "--grad-accum-bytes must be >= 0"),
])
def test_cli_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        memory.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_in_process(capsys):
    assert memory.main(["--model", "gpt2", "--batch", "2", "--seq", "128", "--terms", "--unit", "MB",
                        "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808 parameters" in out and "layers: 12 × per-layer" in out and " MB" in out
    assert memory.main(["--model", "gpt2", "--batch", "4", "--micro-batch", "2"]) == 0
    assert "буфер накопления градиентов" in capsys.readouterr().out


# ---------------------------------------------------------------------------- GPU


def test_cuda_peak_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by the GPU test")
    with pytest.raises(RuntimeError, match="CUDA"):
        cuda_peak_step(lambda: None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_agrees_with_the_ledger():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=1024, block_size=256, n_layer=4, n_head=8, n_embd=512, dropout=0.1, attention="math")
    model = GPT(cfg).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    idx = torch.randint(0, 1024, (8, 256), device="cuda")

    def step():
        model(idx, idx)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    step()  # states exist now; the second step is the steady state
    mem = cuda_peak_step(step)
    led = ledger(model, "adam", "fp32", batch=8, seq=256, target="cuda")
    assert abs(mem["peak"] / led.total - 1) < 0.2


def test_ledger_of_a_plain_module_needs_an_example_input():
    """Without an input the activations are unknown: an error, never a silent zero."""
    with pytest.raises(ValueError, match="example_input"):
        memory.ledger(torch.nn.Linear(4, 3), "adam", "fp32")


def test_timeline_frees_the_loss_first_in_a_gpt():
    """The loss inside GPT.forward saves last, so backward frees its log-softmax first."""
    torch.manual_seed(0)
    model = GPT(SMALL.with_(attention="math"))
    idx = torch.randint(0, 256, (2, 32))
    with SavedTensors(model) as saved:
        model(idx, torch.randint(0, 256, (2, 32)))
    points = simulate_step(saved, model, "adam", first_step=False)
    fwd = [p for p in points if p.phase == "forward"]
    bwd = [p for p in points if p.phase == "backward"]
    assert max(points, key=lambda p: p.total) is fwd[-1]  # the peak: the end of forward
    assert fwd[-1].event == memory.ROOT and bwd[0].event == memory.ROOT
    log_softmax = 2 * 32 * 256 * 4
    assert fwd[-1].activations - bwd[0].activations >= log_softmax


def test_cpu_peak_of_a_step_sees_the_logits_gradients():
    """Measured on CPU: the peak of a second step is the end of forward plus two s·b·V tensors
    (nll_loss and log_softmax backward), above the simulation and below the ledger's total."""
    torch.manual_seed(0)
    cfg = SMALL.with_(attention="math", dropout=0.1)
    model = GPT(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    idx, targets = torch.randint(0, 256, (2, 64)), torch.randint(0, 256, (2, 64))

    def step():
        model(idx, targets)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    with SavedTensors(model) as saved:
        model(idx, targets)
    model.zero_grad(set_to_none=True)
    mem = memory.cpu_peak_step(step)
    assert mem["net"] == 0  # a steady state: the step frees what it allocates
    acts = saved.activation_bytes
    sbv = 2 * 64 * 256 * 4
    assert abs(mem["peak"] - (acts + 2 * sbv)) < 0.02 * acts
    led = ledger(model, "adam", "fp32", batch=2, seq=64, target="cpu")
    assert led.weights + led.optimizer_states + mem["peak"] < led.total
