from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 5

@test_case(points=1, hidden=False)
def test_q1_square_float64(newton_schulz, torch):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(6, 6, generator=g, dtype=torch.float64)
    X = newton_schulz(G.clone())
    U, S, Vh = torch.linalg.svd(G)
    s = S / (torch.linalg.matrix_norm(G) + 1e-07)
    for _ in range(5):
        s = 3.4445 * s - 4.775 * s ** 3 + 2.0315 * s ** 5
    ref = U @ torch.diag(s) @ Vh
    assert tuple(X.shape) == (6, 6) and X.dtype == torch.float64, 'shape and dtype'
    assert torch.allclose(X, ref, atol=1e-10), 'differs from U p(S) V^T'

@test_case(points=1, hidden=False)
def test_q1_band_jordan(ns_band, math):
    lo, hi = ns_band(3.4445, -4.775, 2.0315)
    assert math.isclose(float(lo), 0.68183146, rel_tol=1e-06), f'lo = {lo}'
    assert math.isclose(float(hi), 1.13435726, rel_tol=1e-06), f'hi = {hi}'

