from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = 4

@test_case(points=1, hidden=False)
def test_q1_trace_short(scale_trace):
    flags = [False, False, True, False, False, False, False]
    scales, applied = scale_trace(flags, init_scale=8.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2)
    assert [float(s) for s in scales] == [8.0, 16.0, 8.0, 8.0, 16.0, 16.0, 32.0], scales
    assert [bool(a) for a in applied] == [True, True, False, True, True, True, True], applied

@test_case(points=1, hidden=False)
def test_q1_scaled_sgd_plain(scaled_sgd, np):
    g = [np.array([1.0, -2.0], dtype=np.float32)] * 3
    x, scales = scaled_sgd(np.array([0.0, 0.0], dtype=np.float32), g, 0.5, 4.0, growth_interval=2)
    x = np.asarray(x)
    assert x.dtype == np.float32, f'dtype {x.dtype}'
    assert np.allclose(x, [-1.5, 3.0], rtol=0, atol=1e-06), f'x = {x}'
    assert [float(s) for s in scales] == [4.0, 8.0, 8.0], scales

