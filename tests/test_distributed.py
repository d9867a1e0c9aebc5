"""MyConv2d under DistributedDataParallel: two processes each training on
half the batch end every step with the gradients, and after a few steps the
parameters, of one process training on the full batch. On CPU with the gloo
backend; on two GPUs with NCCL where a machine has them. The same for FSDP
(fully_shard, parameters sharded across the two processes) on CPU."""
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import conv_ext

WORLD = 2
STEPS = 3
BATCH = 8

BACKENDS = [
    pytest.param("gloo", marks=pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with the gloo backend is not available")),
    pytest.param("nccl", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not (dist.is_available() and dist.is_nccl_available() and torch.cuda.device_count() >= WORLD),
        reason="needs NCCL and two CUDA devices")]),
]


def device_for(backend, rank):
    return torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(device):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, groups=2), nn.Tanh(),
        nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()
    return conv_ext.replace_conv2d(model).to(device)


def make_data(device):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, 10, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (BATCH,), generator=gen)
    return x.to(device), y.to(device)


def train(model, x, y, record):
    """STEPS of SGD on cross-entropy; after each step's backward, record
    the gradients."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        record.append([p.grad.detach().clone() for p in model.parameters()])
        opt.step()


def wrap_ddp(model, device, rank):
    return nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)


def wrap_fsdp(model, device, rank):
    # Each MyConv2d is its own FSDP unit: its weight and bias are sharded
    # between the processes and gathered for its forward and backward.
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (WORLD,))
    for layer in model:
        if isinstance(layer, conv_ext.MyConv2d):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def full(t):
    # FSDP keeps parameters and gradients as sharded DTensors.
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def worker(rank, backend, port, out_dir, wrapper="ddp"):
    torch.set_num_threads(1)
    device = device_for(backend, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = make_model(device)
        assert sum(isinstance(m, conv_ext.MyConv2d) for m in model.modules()) == 3
        wrapped = (wrap_fsdp if wrapper == "fsdp" else wrap_ddp)(model, device, rank)
        x, y = make_data(device)
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        grads = []
        train(wrapped, x[shard], y[shard], grads)
        grads = [[full(g).cpu() for g in step] for step in grads]
        params = [full(p.detach()).cpu() for p in model.parameters()]
        torch.save({"grads": grads, "params": params}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ddp_two_processes_match_one_process_on_the_full_batch(backend):
    check_against_one_process(backend, "ddp")


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo")
def test_fsdp_two_processes_match_one_process_on_the_full_batch():
    pytest.importorskip("torch.distributed.fsdp", reason="needs FSDP")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("needs torch.distributed.fsdp.fully_shard (FSDP2)")
    check_against_one_process("gloo", "fsdp")


def check_against_one_process(backend, wrapper):
    device = device_for(backend, 0)
    model = make_model(device)
    x, y = make_data(device)
    expected = []
    train(model, x, y, expected)
    expected = [[g.cpu() for g in step] for step in expected]
    expected_params = [p.detach().cpu() for p in model.parameters()]

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(worker, args=(backend, free_port(), out, wrapper), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)]

    for rank in ranks:
        # The mean of cross-entropy over each half, averaged across the
        # processes, is the mean over the whole batch.
        for step, (got, want) in enumerate(zip(rank["grads"], expected)):
            for g, e in zip(got, want):
                torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12, msg=lambda m: f"step {step}: {m}")
        for p, e in zip(rank["params"], expected_params):
            torch.testing.assert_close(p, e, rtol=1e-9, atol=1e-12)
    # Both processes hold the same bits: broadcast, all-reduce (DDP) or
    # reduce-scatter and all-gather (FSDP) agree.
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)
