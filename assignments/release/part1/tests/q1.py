from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 3

@test_case(points=1, hidden=False)
def test_q1_autograd_float64(tanh_layer_backward, torch):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4, 3, generator=g, dtype=torch.float64)
    W = torch.randn(3, 2, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    G = torch.randn(4, 2, generator=g, dtype=torch.float64)
    dX, dW, db = tanh_layer_backward(X, W, b, G)
    Xr, Wr, br = (t.clone().requires_grad_(True) for t in (X, W, b))
    (torch.tanh(Xr @ Wr + br) * G).sum().backward()
    for got, ref, nm in ((dX, Xr.grad, 'dX'), (dW, Wr.grad, 'dW'), (db, br.grad, 'db')):
        assert tuple(got.shape) == tuple(ref.shape), f'{nm}: shape {tuple(got.shape)}'
        assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12), f'{nm} differs from autograd'

