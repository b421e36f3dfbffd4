"""Tests of nntrain.landscape (chapter 9, «Проекции ландшафта»)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nntrain import landscape as ls


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)


def test_filter_direction_has_the_weights_norm_per_filter_and_zero_bias_bn():
    m = _model()
    d = ls.unflatten(m, ls.random_direction(m, torch.Generator().manual_seed(1)))
    for name, p in m.named_parameters():
        if p.dim() <= 1:
            assert torch.count_nonzero(d[name]) == 0, name
        else:
            wn = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            dn = d[name].reshape(p.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, wn, rtol=1e-5, atol=1e-6)


def test_raw_direction_is_standard_gaussian_and_seeded():
    m = ls.ResMLP(20, 50, 2, 3)
    a = ls.random_direction(m, torch.Generator().manual_seed(2), normalization="none")
    b = ls.random_direction(m, torch.Generator().manual_seed(2), normalization="none")
    assert torch.equal(a, b)
    assert abs(a.std().item() - 1) < 0.05 and abs(a.mean().item()) < 0.05


def test_plane_grid_equals_direct_evaluation():
    m = _model().eval()
    x, y = _data()
    c = ls.flat_params(m)
    g = torch.Generator().manual_seed(3)
    d1, d2 = ls.random_direction(m, g), ls.random_direction(m, g)
    t1, t2 = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 0.5, 3)
    z = ls.plane_losses(m, F.cross_entropy, x, y, c, d1, d2, t1, t2, chunk=4)
    assert z.shape == (3, 5)
    buffers = dict(m.named_buffers())
    for i, b in enumerate(t2):
        for j, a in enumerate(t1):
            params = ls.unflatten(m, c + a * d1 + b * d2)
            direct = F.cross_entropy(functional_call(m, (params, buffers), (x,)), y)
            torch.testing.assert_close(z[i, j], direct, rtol=1e-5, atol=1e-6)
    assert torch.isclose(z[1, 2], F.cross_entropy(m(x), y), rtol=1e-5)


def test_line_losses_match_plane_axis():
    m = ls.ResMLP(4, 8, 2, 3)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    c = ls.flat_params(m)
    d = ls.random_direction(m, torch.Generator().manual_seed(0))
    ts = torch.linspace(-1, 1, 7)
    line = ls.line_losses(m, F.cross_entropy, x, y, c, d, ts)
    plane = ls.plane_losses(m, F.cross_entropy, x, y, c, d, torch.zeros_like(d), ts, torch.zeros(1))
    torch.testing.assert_close(line, plane[0])


def test_bezier_endpoints_and_midpoint():
    a, m, b = torch.randn(6), torch.randn(6), torch.randn(6)
    pts = ls.bezier(a, m, b, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(pts[0], a)
    torch.testing.assert_close(pts[2], b)
    torch.testing.assert_close(pts[1], (a + 2 * m + b) / 4)
    lin = ls.interpolate(a, b, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(lin, torch.stack([a, b]))


def test_train_bezier_lowers_the_curve_loss():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    nets = []
    for s in (0, 1):
        torch.manual_seed(s)
        net = ls.ResMLP(5, 16, 1, 3)
        ls.fit(net, x, y, 200, generator=torch.Generator().manual_seed(s))
        nets.append(net)
    a, b = ls.flat_params(nets[0]), ls.flat_params(nets[1])
    ts = torch.linspace(0, 1, 11)
    before = ls.losses_at(nets[0], F.cross_entropy, x, y, ls.interpolate(a, b, ts))
    mid, hist = ls.train_bezier(nets[0], F.cross_entropy, x, y, a, b, 150,
                                generator=torch.Generator().manual_seed(0))
    after = ls.losses_at(nets[0], F.cross_entropy, x, y, ls.bezier(a, mid, b, ts))
    assert len(hist) == 150
    assert ls.barrier_height(ts, after) < ls.barrier_height(ts, before)


def test_barrier_height_of_a_chord_is_zero():
    ts = torch.linspace(0, 1, 5)
    assert ls.barrier_height(ts, 2 - ts) == pytest.approx(0.0, abs=1e-7)
    assert ls.barrier_height(ts, 1 + ts * (1 - ts)) == pytest.approx(0.25)


def test_cosines_follow_one_over_dim():
    cos = ls.cosines_of_random_pairs(400, 4000, torch.Generator().manual_seed(0))
    assert abs((cos ** 2).mean().item() * 400 - 1) < 0.1


def test_noisy_gd_without_noise_is_gd_and_stays_in_the_narrow_well():
    path = ls.noisy_gd_1d(ls.two_wells, torch.tensor([-0.9]), 0.01, 0.0, 500)
    assert path.shape == (501, 1)
    assert abs(path[-1].item() + 1) < 0.05


def test_resmlp_without_skip_is_a_plain_mlp():
    m = ls.ResMLP(3, 4, 2, 2, skip=False)
    x = torch.randn(5, 3)
    h = torch.relu(m.inp(x))
    for blk in m.blocks:
        h = torch.relu(blk(h))
    torch.testing.assert_close(m(x), m.out(h))


def test_bad_input_gives_clear_errors():
    empty = nn.ReLU()
    with pytest.raises(ValueError, match="no parameters"):
        ls.random_direction(empty)
    with pytest.raises(ValueError, match="no parameters"):
        ls.flat_params(empty)
    m = ls.ResMLP(4, 8, 1, 3)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    c = ls.flat_params(m)
    d = ls.random_direction(m)
    with pytest.raises(ValueError, match="non-empty"):
        ls.plane_losses(m, F.cross_entropy, x, y, c, d, d, torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        ls.line_losses(m, F.cross_entropy, x, y, c, d, torch.tensor([]))
    with pytest.raises(ValueError, match=r"\(n, Ψ\)"):
        ls.losses_at(m, F.cross_entropy, x, y, torch.zeros(0, len(c)))
    with pytest.raises(ValueError, match="entries"):
        ls.unflatten(m, c[:-1])
    with pytest.raises(ValueError, match="normalization"):
        ls.random_direction(m, normalization="layer")
    with pytest.raises(ValueError, match="dim"):
        ls.cosines_of_random_pairs(0, 3)


def test_barrier_height_needs_a_path_from_zero_to_one():
    with pytest.raises(ValueError, match="t = 0 to t = 1"):
        ls.barrier_height(torch.linspace(0.1, 0.9, 5), torch.ones(5))


def test_gibbs_share_of_a_symmetric_double_well_is_half_and_laplace_limit():
    double = lambda x: (x ** 2 - 1) ** 2
    assert ls.gibbs_share(double, 0.3, -3.0, 3.0) == pytest.approx(0.5, abs=1e-3)
    # two quadratic wells of equal depth, curvatures 1 and 16: Laplace gives mass ∝ 1/sqrt(f'')
    quad = lambda x: torch.where(x < 0, 8 * (x + 1) ** 2, 0.5 * (x - 1) ** 2).clamp_max(3.0)
    assert ls.gibbs_share(quad, 0.01, -3.0, 3.0) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="temperature"):
        ls.gibbs_share(double, 0.0)


@pytest.mark.parametrize("skip,batchnorm", [(True, True), (False, True), (True, False)])
def test_small_cnn_shapes_and_loop_equals_vmap(skip, batchnorm):
    torch.manual_seed(0)
    m = ls.SmallCNN(width=4, depth=2, skip=skip, batchnorm=batchnorm).eval()
    x, y = torch.rand(12, 64), torch.randint(0, 10, (12,))
    assert m(x).shape == (12, 10)
    assert torch.equal(m(x), m(x.reshape(12, 1, 8, 8)))
    has_bn = any(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())
    assert has_bn == batchnorm
    c = ls.flat_params(m)
    g = torch.Generator().manual_seed(0)
    d1, d2 = ls.random_direction(m, g), ls.random_direction(m, g)
    tt = torch.linspace(-1, 1, 4)
    zv = ls.plane_losses(m, F.cross_entropy, x, y, c, d1, d2, tt, tt, chunk=5)
    zl = ls.plane_losses(m, F.cross_entropy, x, y, c, d1, d2, tt, tt, method="loop")
    torch.testing.assert_close(zv, zl, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        ls.losses_at(m, F.cross_entropy, x, y, c[None], method="scan")


def test_small_cnn_skip_changes_the_block():
    torch.manual_seed(0)
    a = ls.SmallCNN(4, 1, skip=True, batchnorm=False)
    b = ls.SmallCNN(4, 1, skip=False, batchnorm=False)
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 64)
    h = torch.relu(a.stem(x.reshape(3, 1, 8, 8)))
    z = a.convs[0](h)
    torch.testing.assert_close(a(x), a.head(torch.relu(h + z).mean(dim=(2, 3))))
    torch.testing.assert_close(b(x), b.head(torch.relu(z).mean(dim=(2, 3))))


def test_plane_summary_counts_basin_radius_and_pits():
    t = torch.linspace(-1, 1, 5)
    b, a = torch.meshgrid(t, t, indexing="ij")
    bowl = a ** 2 + b ** 2
    s = ls.plane_summary(bowl, t, t, threshold=0.3)
    assert s["share"] == pytest.approx(5 / 25)          # centre and its 4 neighbours at 0.25
    assert s["radius"] == pytest.approx(0.5 * 2 ** 0.5)
    assert s["local_minima"] == 1
    pits = bowl.clone()
    pits[0, 0] = -1.0
    assert ls.plane_summary(pits, t, t)["local_minima"] == 2
    assert ls.plane_summary(bowl, t, t, threshold=10.0)["radius"] == float("inf")
    with pytest.raises(ValueError, match="shape"):
        ls.plane_summary(bowl[:4], t, t)
