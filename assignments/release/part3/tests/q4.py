from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 5

@test_case(points=1, hidden=False)
def test_q4_fit_tall(min_norm_fit, np):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    beta = np.arange(1.0, 6.0)
    b = np.asarray(min_norm_fit(X, X @ beta))
    assert b.shape == (5,) and np.allclose(b, beta, atol=1e-10), 'noiseless tall X: beta back'

@test_case(points=1, hidden=False)
def test_q4_asymptotic_basic(asymptotic_risk, math):
    assert math.isclose(float(asymptotic_risk(0.5, 1.0, 1.0)), 1.0), 'gamma = 1/2'
    assert math.isclose(float(asymptotic_risk(2.0, 4.0, 1.0)), 3.0), 'gamma = 2'

