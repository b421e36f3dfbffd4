from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 5

@test_case(points=1, hidden=False)
def test_q4_full_mask_equal_micro(accumulated_grad, np):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3, 2))
    y = rng.standard_normal((4, 3))
    w = np.array([0.5, -1.0])
    mask = np.ones((4, 3), dtype=bool)
    ref = np.einsum('bt,btd->d', X @ w - y, X) / 12
    got = np.asarray(accumulated_grad(w, X, y, mask, [2, 2]))
    assert got.shape == (2,) and np.allclose(got, ref, rtol=1e-12), f'got {got}, full {ref}'

@test_case(points=1, hidden=False)
def test_q4_micro_mean_equal_tokens(micro_mean_grad, np):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 3, 2))
    y = rng.standard_normal((4, 3))
    w = np.array([1.0, 2.0])
    mask = np.ones((4, 3), dtype=bool)
    ref = np.einsum('bt,btd->d', X @ w - y, X) / 12
    got = np.asarray(micro_mean_grad(w, X, y, mask, [2, 2]))
    assert np.allclose(got, ref, rtol=1e-12), 'equal token counts: the recipe is exact'

