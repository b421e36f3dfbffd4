from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 4

@test_case(points=1, hidden=False)
def test_q3_hvp_small(hvp, torch):
    g = torch.Generator().manual_seed(0)
    d, h, B = (3, 4, 10)
    X = torch.randn(B, d, generator=g, dtype=torch.float64)
    y = torch.randn(B, generator=g, dtype=torch.float64)
    w = torch.randn(d * h + h, generator=g, dtype=torch.float64)
    v = torch.randn(d * h + h, generator=g, dtype=torch.float64)

    def loss(w):
        return 0.5 * ((torch.tanh(X @ w[:d * h].reshape(d, h)) @ w[d * h:] - y) ** 2).mean()
    H = torch.autograd.functional.hessian(loss, w)
    got = hvp(w.clone(), X, y, v.clone(), h)
    assert tuple(got.shape) == (d * h + h,), f'shape {tuple(got.shape)}'
    assert torch.allclose(got, H @ v, rtol=1e-09, atol=1e-12), 'differs from H v'

