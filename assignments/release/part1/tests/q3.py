from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 6

@test_case(points=1, hidden=False)
def test_q3_plateau_one_dim(sgd_plateau, np, math):
    got = sgd_plateau(np.array([1.0]), 0.1, 1.0)
    assert math.isclose(float(got), 0.1 / (2 * 1.9), rel_tol=1e-12), f'got {got}'

@test_case(points=1, hidden=False)
def test_q3_expected_loss_first_steps(expected_loss, np, math):
    h, x0 = (np.array([2.0, 0.5]), np.array([1.0, -2.0]))
    assert math.isclose(float(expected_loss(h, 0.1, 0.3, x0, 0)), 0.5 * (2 * 1 + 0.5 * 4), rel_tol=1e-12), 'k = 0 must give f(x0)'
    e1 = (1 - 0.1 * h) ** 2 * x0 ** 2 + 0.1 ** 2 * 0.3 ** 2
    ref = float(0.5 * np.sum(h * e1))
    assert math.isclose(float(expected_loss(h, 0.1, 0.3, x0, 1)), ref, rel_tol=1e-12), 'k = 1'

@test_case(points=1, hidden=False)
def test_q3_simulate_shape(simulate_sgd, np):
    h, x0 = (np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    out = np.asarray(simulate_sgd(h, 0.1, 0.5, x0, 50, 400, 0))
    assert out.shape == (400,), f'shape {out.shape}, expected (400,)'
    assert np.all(np.isfinite(out)) and np.all(out >= 0), 'f(x_k) must be finite and >= 0'
    assert 0.008 < out.mean() < 0.022, f'mean {out.mean():.4f} far from the noise level'

