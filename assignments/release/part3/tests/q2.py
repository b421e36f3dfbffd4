from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 4

@test_case(points=1, hidden=False)
def test_q2_linear_layer(filter_normalize, torch):
    W = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    D = torch.tensor([[1.0, 0.0], [0.0, -2.0], [1.0, 1.0]], dtype=torch.float64)
    out = filter_normalize([D.clone(), torch.ones(3, dtype=torch.float64)], [W, b])
    assert len(out) == 2 and tuple(out[0].shape) == (3, 2), 'one tensor per parameter'
    ref = torch.tensor([[5.0, 0.0], [0.0, -1.0], [2 ** 0.5, 2 ** 0.5]], dtype=torch.float64)
    assert torch.allclose(out[0], ref, atol=1e-08), f'got {out[0]}'
    assert torch.all(out[1] == 0), 'bias direction must be zero'

