"""Thread safety: four Python threads calling the ops at once, on shared
weights, each get the results a lone caller gets."""
import threading

import torch

import conv_ext

ops = conv_ext.ops
THREADS = 4
ROUNDS = 25
CONF = ([2, 1], [1, 1], [1, 2], 2)  # stride, padding, dilation, groups
KW = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)


def run_threads(target, n=THREADS):
    """Runs target(i) in n threads released together; re-raises the first
    error any of them hit."""
    barrier = threading.Barrier(n)
    errors = []

    def body(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as e:  # noqa: BLE001  (reported to the test below)
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def shared_weights(device, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 3, 3, 3, generator=gen, dtype=dtype).to(device)
    b = torch.randn(8, generator=gen, dtype=dtype).to(device)
    inputs = [torch.randn(3, 6, 13, 11, generator=gen, dtype=dtype).to(device) for _ in range(THREADS)]
    return w, b, inputs


def test_ops_concurrently_on_shared_weights(device):
    w, b, inputs = shared_weights(device)
    expected = []
    for x in inputs:
        y = ops.conv2d_forward(x, w, b, *CONF)
        expected.append((y, ops.conv2d_backward_input(y, w, list(x.shape), *CONF),
                         ops.conv2d_backward_weight(y, x, list(w.shape), *CONF),
                         ops.conv2d_backward_bias(y)))

    def work(i):
        x = inputs[i]
        for _ in range(ROUNDS):
            y = ops.conv2d_forward(x, w, b, *CONF)
            got = (y, ops.conv2d_backward_input(y, w, list(x.shape), *CONF),
                   ops.conv2d_backward_weight(y, x, list(w.shape), *CONF),
                   ops.conv2d_backward_bias(y))
            for a, e in zip(got, expected[i]):
                torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)

    run_threads(work)


def test_autograd_concurrently_through_a_shared_module(device):
    """One MyConv2d used by four threads; each takes its own gradients with
    torch.autograd.grad (no shared .grad accumulation)."""
    torch.manual_seed(0)
    module = conv_ext.MyConv2d(6, 8, 3, **KW).to(device, torch.float64)
    ref = torch.nn.Conv2d(6, 8, 3, **KW).to(device, torch.float64)
    ref.load_state_dict(module.state_dict())
    _, _, inputs = shared_weights(device)
    expected = []
    for x in inputs:
        x = x.clone().requires_grad_()
        y = ref(x)
        expected.append((y.detach(), *torch.autograd.grad(y.square().sum(), (x, ref.weight, ref.bias))))

    def work(i):
        for _ in range(ROUNDS):
            x = inputs[i].clone().requires_grad_()
            y = module(x)
            got = (y.detach(), *torch.autograd.grad(y.square().sum(), (x, module.weight, module.bias)))
            for a, e in zip(got, expected[i]):
                torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)

    run_threads(work)


def test_shared_grad_accumulation_is_complete(device):
    """Four threads each run backward into the same weight.grad: the sum
    is the sum of the four (autograd serialises the accumulation)."""
    torch.manual_seed(0)
    module = conv_ext.MyConv2d(6, 8, 3, **KW).to(device, torch.float64)
    _, _, inputs = shared_weights(device)
    single = []
    for x in inputs:
        module.zero_grad()
        module(x).square().sum().backward()
        single.append(module.weight.grad.clone())
    module.zero_grad()

    def work(i):
        module(inputs[i]).square().sum().backward()

    run_threads(work)
    torch.testing.assert_close(module.weight.grad, sum(single), rtol=1e-10, atol=1e-10)


def test_concurrent_calls_with_errors_and_mixed_dtypes(device):
    """Threads mixing valid calls in several dtypes with rejected ones: an
    error in one thread does not disturb the others."""
    w, b, inputs = shared_weights(device)

    def work(i):
        dtype = [torch.float64, torch.float32, torch.bfloat16, torch.float32][i]
        x, wd, bd = inputs[i].to(dtype), w.to(dtype), b.to(dtype)
        expected = torch.nn.functional.conv2d(x.double(), wd.double(), bd.double(), **KW)
        tol = {torch.float64: 1e-12, torch.float32: 1e-4, torch.bfloat16: 0.1}[dtype]
        for r in range(ROUNDS):
            if (r + i) % 3 == 0:
                try:
                    ops.conv2d_forward(x, wd, bd, [1, 1], [0, 0], [1, 1], 4)
                except RuntimeError as e:
                    assert "divisible by groups" in str(e)
                else:
                    raise AssertionError("groups=4 was accepted")
            y = ops.conv2d_forward(x, wd, bd, *CONF)
            torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol * expected.abs().max().item())

    run_threads(work)
