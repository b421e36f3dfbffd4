from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 4

@test_case(points=1, hidden=False)
def test_q2_peak_and_grads_basic(segment_peak, checkpointed_tanh_grads, torch):
    assert int(segment_peak([4, 3, 3])) == 6, 'peak of [4, 3, 3]'
    assert int(segment_peak([3, 3, 3, 3])) == 7, 'peak of [3, 3, 3, 3]'
    g = torch.Generator().manual_seed(0)
    Ws = [torch.randn(3, 3, generator=g, dtype=torch.float64) / 2 for _ in range(4)]
    x = torch.randn(2, 3, generator=g, dtype=torch.float64)
    grads, rec = checkpointed_tanh_grads([W.clone() for W in Ws], x.clone(), [2, 2])
    Wr = [W.clone().requires_grad_(True) for W in Ws]
    h = x
    for W in Wr:
        h = torch.tanh(h @ W)
    (0.5 * (h ** 2).sum()).backward()
    assert len(grads) == 4, 'one gradient per layer'
    for a, W in zip(grads, Wr):
        assert torch.allclose(a, W.grad, rtol=1e-10, atol=1e-12), 'gradient differs'
    assert int(rec) == 2, f'recomputed {rec} layers, expected 2'

