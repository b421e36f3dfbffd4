"""nntrain.autograd: our reverse mode against torch.autograd (float64), invariants and error messages."""

import numpy as np
import pytest
import torch

from nntrain import autograd as ag
from nntrain.autograd import Tensor


def _pair(array):
    return Tensor(array, requires_grad=True), torch.tensor(array, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("seed", range(40))
def test_random_programs_match_torch(seed):
    rng = np.random.default_rng(seed)
    program = ag.random_program(rng, n_ops=int(rng.integers(1, 25)), with_cross_entropy=bool(seed % 2))
    result = ag.check_against_torch(program, ag.random_inputs(program, rng))
    assert result.ok, result


def test_random_programs_cover_every_operation():
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(30):
        used |= ag.random_program(rng, n_ops=20).ops_used()
    assert used == set(ag.OPS)


BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((), (3, 4))]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", BINARY_SHAPES)
def test_binary_ops_with_broadcasting(op, shapes):
    rng = np.random.default_rng(1)
    a, ta = _pair(rng.standard_normal(shapes[0]))
    b, tb = _pair(rng.uniform(0.5, 2.0, shapes[1]))
    seed = rng.standard_normal(np.broadcast_shapes(*shapes))
    out = Tensor.apply(op, a, b)
    tout = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[op](ta, tb)
    out.backward(seed)
    tout.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-12, atol=1e-14)


UNARY = {
    "neg": (lambda t: -t, lambda t: -t),
    "exp": (lambda t: t.exp(), torch.exp),
    "log": (lambda t: t.log(), torch.log),
    "relu": (lambda t: t.relu(), torch.relu),
    "sigmoid": (lambda t: t.sigmoid(), torch.sigmoid),
    "tanh": (lambda t: t.tanh(), torch.tanh),
    "pow2": (lambda t: t**2, lambda t: t**2),
    "pow-1.5": (lambda t: t**-1.5, lambda t: t**-1.5),
    "sum": (lambda t: t.sum(), torch.sum),
    "sum0": (lambda t: t.sum(axis=0), lambda t: t.sum(dim=0)),
    "sum1k": (lambda t: t.sum(axis=1, keepdims=True), lambda t: t.sum(dim=1, keepdim=True)),
    "sum01": (lambda t: t.sum(axis=(0, 2)), lambda t: t.sum(dim=(0, 2))),
    "mean": (lambda t: t.mean(), torch.mean),
    "mean-1": (lambda t: t.mean(axis=-1), lambda t: t.mean(dim=-1)),
    "mean0k": (lambda t: t.mean(axis=0, keepdims=True), lambda t: t.mean(dim=0, keepdim=True)),
    "reshape": (lambda t: t.reshape(4, 6), lambda t: t.reshape(4, 6)),
    "transpose": (lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    "transpose-axes": (lambda t: t.transpose(1, 0, 2), lambda t: t.permute(1, 0, 2)),
    "log_softmax": (lambda t: t.log_softmax(axis=-1), lambda t: torch.log_softmax(t, dim=-1)),
    "log_softmax1": (lambda t: t.log_softmax(axis=1), lambda t: torch.log_softmax(t, dim=1)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(name):
    rng = np.random.default_rng(2)
    x = rng.uniform(0.2, 3.0, (2, 3, 4)) * (1 if name in ("log",) or name.startswith("pow") else rng.choice([-1, 1], (2, 3, 4)))
    a, ta = _pair(x)
    ours, theirs = UNARY[name]
    out, tout = ours(a), theirs(ta)
    seed = rng.standard_normal(out.shape)
    out.backward(seed)
    tout.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 5))])
def test_matmul_with_batch_broadcasting(shapes):
    rng = np.random.default_rng(3)
    a, ta = _pair(rng.standard_normal(shapes[0]))
    b, tb = _pair(rng.standard_normal(shapes[1]))
    (a @ b).sum().backward()
    (ta @ tb).sum().backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-12)


def test_linear_layer_gradients_in_matrix_form():
    rng = np.random.default_rng(4)
    x, w, b = (Tensor(rng.standard_normal(s), requires_grad=True) for s in [(5, 3), (3, 2), (2,)])
    delta = rng.standard_normal((5, 2))
    (x @ w + b).backward(delta)
    np.testing.assert_allclose(w.grad, x.data.T @ delta)
    np.testing.assert_allclose(x.grad, delta @ w.data.T)
    np.testing.assert_allclose(b.grad, delta.sum(axis=0))


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    rng = np.random.default_rng(5)
    z, tz = _pair(rng.standard_normal((6, 4)))
    y = rng.integers(0, 4, 6)
    loss = ag.cross_entropy(z, y)
    loss.backward()
    tloss = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-12
    probs = np.exp(z.data) / np.exp(z.data).sum(1, keepdims=True)
    np.testing.assert_allclose(z.grad, (probs - np.eye(4)[y]) / 6, atol=1e-14)
    np.testing.assert_allclose(z.grad, tz.grad.numpy(), atol=1e-14)


def test_stable_for_large_logits():
    z = Tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = ag.cross_entropy(z, [2])
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))
    assert np.all(np.isfinite(Tensor([-800.0, 800.0]).sigmoid().data))


def test_reused_node_accumulates():
    x = Tensor(3.0, requires_grad=True)
    y = x * x + x  # x is used three times
    y.backward()
    assert x.grad == pytest.approx(2 * 3.0 + 1)


def test_leaf_gradients_accumulate_across_calls_like_torch():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * x.data)
    x.zero_grad()
    assert x.grad is None


def test_deep_chain_has_no_recursion_limit():
    x = Tensor(0.5, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == pytest.approx(1.0)


def test_constants_do_not_get_gradients_or_graph():
    c = Tensor([1.0, 2.0])
    x = Tensor([3.0, 4.0], requires_grad=True)
    out = (c * 2.0).exp()
    assert not out.requires_grad and out.parents == () and out.saved == ()
    (out * x).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, np.exp(2 * c.data))


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    y = (x @ x).tanh().sum()
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_saved_bytes_grow_linearly_with_batch():
    rng = np.random.default_rng(6)
    model = ag.MLP([8, 16, 16, 4], rng)
    sizes = []
    for batch in (10, 20, 40):
        loss = ag.cross_entropy(model(Tensor(rng.standard_normal((batch, 8)))), rng.integers(0, 4, batch))
        sizes.append(ag.saved_bytes(loss))
    assert sizes[2] - sizes[1] == 2 * (sizes[1] - sizes[0]) > 0
    # parameters are saved too (matmul keeps W): the part that does not grow with the batch
    params = sum(p.data.nbytes for p in model.parameters() if p.ndim == 2)
    assert sizes[0] - (sizes[1] - sizes[0]) == params
    # without them: input, per hidden layer a float64 output and a bool mask, the softmax, the labels
    acts = ag.saved_bytes(loss, exclude=model.parameters())
    assert acts == 40 * (8 * (8 + 16 + 16 + 4) + 2 * 16 + 8)


def test_mlp_matches_torch_twin():
    rng = np.random.default_rng(7)
    for activation in ("relu", "tanh", "sigmoid"):
        model = ag.MLP([5, 7, 6, 3], rng, activation=activation)
        twin = model.to_torch()
        x = rng.standard_normal((9, 5))
        y = rng.integers(0, 3, 9)
        loss = ag.cross_entropy(model(Tensor(x)), y)
        loss.backward()
        tloss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        assert abs(loss.item() - tloss.item()) < 1e-12
        for layer, lin in zip(model.layers, [m for m in twin if isinstance(m, torch.nn.Linear)]):
            np.testing.assert_allclose(layer.W.grad, lin.weight.grad.numpy().T, atol=1e-13)
            np.testing.assert_allclose(layer.b.grad, lin.bias.grad.numpy(), atol=1e-13)


def test_train_mlp_learns_and_matches_torch_sgd():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = ag.MLP([4, 16, 2], rng)
    twin = model.to_torch()
    losses = ag.train_mlp(model, x, y, epochs=30, batch_size=64, lr=0.5, rng=np.random.default_rng(0), progress=False)
    assert losses[-1] < 0.5 * losses[0]
    assert ag.accuracy(model, x, y) > 0.9
    twin_losses = ag.train_torch_reference(twin, x, y, epochs=30, batch_size=64, lr=0.5, rng=np.random.default_rng(0),
                                      progress=False)
    np.testing.assert_allclose(losses, twin_losses, rtol=1e-10)
    np.testing.assert_allclose(model.layers[0].W.data, twin[0].weight.detach().numpy().T, atol=1e-10)


def test_minibatch_training_matches_torch_reference_step_by_step():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    model = ag.MLP([6, 8, 8, 3], rng, activation="tanh")
    twin = model.to_torch()
    ours = ag.train_mlp(model, x, y, 3, 16, 0.1, np.random.default_rng(1), progress=False)
    theirs = ag.train_torch_reference(twin, x, y, 3, 16, 0.1, np.random.default_rng(1), progress=False)
    assert len(ours) == 3 * 4
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_unbroadcast():
    g = np.ones((2, 3, 4))
    assert ag.unbroadcast(g, (3, 1)).tolist() == [[8.0]] * 3
    assert ag.unbroadcast(g, ()).item() == 24.0
    with pytest.raises(ValueError, match="larger shape"):
        ag.unbroadcast(np.ones(3), (2, 3))


def test_topological_order_puts_parents_first():
    x = Tensor(1.0, requires_grad=True)
    a = x * 2.0
    b = a + x
    order = ag.topological_order(b)
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        assert all(position[id(p)] < position[id(node)] for p in node.parents)


# --------------------------------------------------------------------------- bad input


def test_matmul_shape_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\).*4 != 5"):
        Tensor(np.ones((3, 4))) @ Tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Tensor(np.ones(3)) @ Tensor(np.ones((3, 2)))


def test_broadcast_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\) and \(5,\)"):
        Tensor(np.ones((3, 4))) + Tensor(np.ones(5))


def test_backward_on_non_scalar_needs_a_seed():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match="shape \\(2, 3\\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="seed gradient has shape"):
        (x * 2.0).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="requires_grad"):
        Tensor(1.0).backward()


def test_unknown_operations_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown operation 'sin'.*supported"):
        Tensor.apply("sin", Tensor(1.0))
    with pytest.raises(TypeError, match="takes 2"):
        Tensor.apply("add", Tensor(1.0))
    with pytest.raises(TypeError, match="unexpected parameter"):
        Tensor.apply("exp", Tensor(1.0), axis=0)
    with pytest.raises(TypeError, match="constant real exponent"):
        Tensor(2.0) ** Tensor(2.0)
    with pytest.raises(TypeError, match="real numbers"):
        Tensor(["a", "b"])
    with pytest.raises(TypeError, match="different dtypes"):
        Tensor(np.ones(2, np.float32)) + Tensor(np.ones(2))
    with pytest.raises(ValueError, match="cannot reshape"):
        Tensor(np.ones(6)).reshape(4, 2)
    with pytest.raises(ValueError, match="not a permutation"):
        Tensor(np.ones((2, 3))).transpose(0, 0)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        Tensor(np.ones((2, 3))).sum(axis=2)


def test_cross_entropy_rejects_bad_targets():
    z = Tensor(np.zeros((3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match=r"lie in \[0, 3\]"):
        ag.cross_entropy(z, [0, 1, 4])
    with pytest.raises(ValueError, match="integer class indices"):
        ag.cross_entropy(z, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="batch, classes"):
        ag.cross_entropy(Tensor(np.zeros(4)), [0])


def test_model_and_program_arguments_are_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown activation"):
        ag.MLP([2, 2], rng, activation="gelu")
    with pytest.raises(ValueError, match="at least"):
        ag.MLP([2], rng)
    with pytest.raises(ValueError, match="n_ops"):
        ag.random_program(rng, n_ops=0)
    program = ag.random_program(rng, n_ops=3)
    with pytest.raises(ValueError, match="unknown backend"):
        ag.run_program(program, ag.random_inputs(program, rng), backend="jax")
    with pytest.raises(ValueError, match="inputs"):
        ag.run_program(program, [])


def test_graph_drawing_places_every_node_once():
    import matplotlib

    matplotlib.use("Agg")
    from nntrain import graphplot

    rng = np.random.default_rng(9)
    model = ag.MLP([4, 3, 2], rng)
    loss = ag.cross_entropy(model(Tensor(rng.standard_normal((5, 4)), name="X")), [0, 1, 0, 1, 1])
    pos = graphplot.layout(loss)
    assert len(pos) == len(ag.topological_order(loss)) == 11
    assert len(set(pos.values())) == len(pos)  # no two nodes on top of each other
    ax = graphplot.draw_graph(loss)
    boxes = [t for t in ax.texts if not isinstance(t, matplotlib.text.Annotation)]
    assert len(boxes) == 11
    with pytest.raises(TypeError, match="Tensor"):
        graphplot.draw_graph(np.ones(3))


def test_random_program_check_catches_a_broken_rule():
    original = ag._RULES["sigmoid"]

    def slightly_wrong(xs, params):
        out, vjp, saved = original.rule(xs, params)
        return out, (lambda g: (vjp(g)[0] * (1 + 1e-5),)), saved

    rng = np.random.default_rng(0)
    caught = used = 0
    with ag.override_op("sigmoid", slightly_wrong):
        for _ in range(60):
            program = ag.random_program(rng, n_ops=20)
            if "sigmoid" in program.ops_used():
                used += 1
                caught += not ag.check_against_torch(program, ag.random_inputs(program, rng)).ok
    assert used >= 10 and caught >= used // 2, (caught, used)
    assert ag._RULES["sigmoid"] is original  # the with block put the rule back


def test_the_chapters_400_random_programs_match_torch():
    """The chapter's check at full size: 400 programs with 1–29 random operations, every operation used."""
    rng = np.random.default_rng(2024)
    programs = [ag.random_program(rng, n_ops=int(rng.integers(1, 30))) for _ in range(400)]
    results = [ag.check_against_torch(p, ag.random_inputs(p, rng)) for p in programs]
    assert set().union(*(p.ops_used() for p in programs)) == set(ag.OPS)
    assert all(r.ok for r in results)
    # far below the tolerance 1e-10: round-off, not a wrong rule
    assert max(r.max_scaled_diff for r in results) < 1e-11


def _sin_rule(xs, params):
    (a,) = xs
    return np.sin(a), (lambda g: (g * np.cos(a),)), (a,)


def test_register_op_adds_an_operation_that_matches_torch():
    try:
        assert ag.register_op("sin", _sin_rule) is None
        assert "sin" in ag.ops() and "sin" not in ag.OPS
        x0 = np.random.default_rng(0).standard_normal((3, 4))
        x = Tensor(x0, requires_grad=True)
        (Tensor.apply("sin", x) * x).sum().backward()
        xt = torch.tensor(x0, requires_grad=True)
        (torch.sin(xt) * xt).sum().backward()
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-13)
        with pytest.raises(ValueError, match="exists already"):
            ag.register_op("sin", _sin_rule)
        assert ag.register_op("sin", _sin_rule, replace=True).rule is _sin_rule
    finally:
        ag._RULES.pop("sin", None)
    with pytest.raises(ValueError, match="unknown operation 'sin'"):
        Tensor.apply("sin", Tensor(1.0))


def test_register_op_rejects_bad_input():
    with pytest.raises(ValueError, match="identifier"):
        ag.register_op("not a name", _sin_rule)
    with pytest.raises(TypeError, match="callable"):
        ag.register_op("sin2", 42)
    with pytest.raises(ValueError, match="arity"):
        ag.register_op("sin2", _sin_rule, arity=0)
    with pytest.raises(ValueError, match="params"):
        ag.register_op("sin2", _sin_rule, params=("a b",))
    with pytest.raises(ValueError, match="unknown operation"):
        with ag.override_op("no_such_op", _sin_rule):
            pass
    assert "sin2" not in ag.ops()


def test_override_op_restores_the_rule_even_after_an_error():
    original = ag._RULES["relu"]

    def relu_keep_output(xs, params):
        out = np.maximum(xs[0], 0.0)
        return out, (lambda g: (g * (out > 0),)), (out,)

    with pytest.raises(RuntimeError):
        with ag.override_op("relu", relu_keep_output):
            assert ag._RULES["relu"].rule is relu_keep_output
            raise RuntimeError("boom")
    assert ag._RULES["relu"] is original


def test_relu_that_keeps_its_output_saves_the_masks_bytes():
    """Exercise 4 of the chapter: L·B·h bytes of masks disappear."""
    def relu_keep_output(xs, params):
        out = np.maximum(xs[0], 0.0)
        return out, (lambda g: (g * (out > 0),)), (out,)

    def saved(model):
        x = Tensor(np.random.default_rng(1).standard_normal((64, 64)), dtype=np.float32)
        loss = ag.cross_entropy(model(x), np.zeros(64, dtype=np.int64))
        return ag.saved_bytes(loss, exclude=model.parameters())

    model = ag.MLP([64, 128, 128, 10], np.random.default_rng(0), dtype=np.float32)
    before = saved(model)
    with ag.override_op("relu", relu_keep_output):
        after = saved(model)
    assert before - after == 2 * 64 * 128


def test_train_torch_twin_is_the_old_name():
    assert ag.train_torch_twin is ag.train_torch_reference
