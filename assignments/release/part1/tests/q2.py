from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = 5

@test_case(points=1, hidden=False)
def test_q2_one_step_like_torch(adam_step, torch):
    x0 = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    grad = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5], dtype=torch.float64)
    p = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=0.01)
    p.grad = grad.clone()
    opt.step()
    zeros = torch.zeros_like(x0)
    x1, m1, v1 = adam_step(x0.clone(), grad.clone(), zeros.clone(), zeros.clone(), 1, lr=0.01)
    st = opt.state[p]
    assert torch.allclose(x1, p.detach(), rtol=0, atol=1e-12), 'x differs from torch.optim.Adam'
    assert torch.allclose(m1, st['exp_avg'], atol=1e-14), 'm differs'
    assert torch.allclose(v1, st['exp_avg_sq'], atol=1e-14), 'v differs'

