from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = 4

@test_case(points=1, hidden=False)
def test_q4_small_adam_float32(mlp_ledger, torch):

    def measure(sizes, batch, optimizer, dtype):
        mods = []
        for i in range(len(sizes) - 1):
            mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                mods.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*mods).to(dtype)
        pptr = {p.untyped_storage().data_ptr() for p in net.parameters()}
        saved = {}

        def pack(t):
            st = t.untyped_storage()
            if st.data_ptr() not in pptr:
                saved[st.data_ptr()] = st.nbytes()
            return t
        X = torch.randn(batch, sizes[0], dtype=dtype)
        y = torch.randint(0, sizes[-1], (batch,))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = torch.nn.functional.cross_entropy(net(X), y)
        loss.backward()
        ps = list(net.parameters())
        opt = {'sgd': lambda: torch.optim.SGD(ps, lr=0.1), 'momentum': lambda: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 'adam': lambda: torch.optim.Adam(ps)}[optimizer]()
        opt.step()
        w = sum((p.untyped_storage().nbytes() for p in ps))
        g = sum((p.grad.untyped_storage().nbytes() for p in ps))
        s = sum((t.untyped_storage().nbytes() for st in opt.state.values() for t in st.values() if torch.is_tensor(t)))
        a = sum(saved.values())
        return {'weights': w, 'grads': g, 'optimizer_states': s, 'activations': a, 'total': w + g + s + a}
    ref = measure([5, 7, 3], 3, 'adam', torch.float32)
    got = mlp_ledger([5, 7, 3], 3, 'adam', 4)
    for key in ref:
        assert int(got[key]) == ref[key], f'{key}: {got[key]} bytes, PyTorch holds {ref[key]}'

