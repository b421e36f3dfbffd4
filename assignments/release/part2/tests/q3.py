from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = 5

@test_case(points=1, hidden=False)
def test_q3_small_roundtrip(quantize_blockwise, dequantize_blockwise, np):
    x = np.array([1.0, -0.5, 0.25, 0.0, 2.0, 4.0, -4.0, 1.0], dtype=np.float32)
    codes, absmax = quantize_blockwise(x, 4)
    codes, absmax = (np.asarray(codes), np.asarray(absmax))
    assert codes.dtype == np.int8 and codes.shape == (8,), f'codes {codes.dtype} {codes.shape}'
    assert np.allclose(absmax, [1.0, 4.0]), f'absmax {absmax}'
    assert codes.tolist() == [127, -64, 32, 0, 64, 127, -127, 32], codes.tolist()
    back = np.asarray(dequantize_blockwise(codes, absmax, 4, (8,)))
    assert back.dtype == np.float32 and np.abs(back - x).max() <= 4.0 / 254 + 1e-07, 'roundtrip'

