"""What the trainer does differently when ``accelerate launch`` starts several processes.

Data parallelism over a fixed global batch: step ``s`` trains on samples ``(s, 0..B-1)``
whatever the number of processes ``N``; process ``r`` computes samples ``r, r + N, ...``
(their order, noise and level are seeded per ``(seed, step, index)`` as in one process), its
loss is the sum of its rows divided by ``B``, and after ``backward`` the gradients are summed
over the processes. The sum of the shards is the gradient of the mean over the global
batch, so every process takes the same optimiser step a single process would take, up to
float rounding in the order of additions.

With one process every function here is the identity (no collective call is made).
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..errors import ConfigError


def shard_indices(batch_size: int, process_index: int, num_processes: int) -> list[int]:
    """The batch positions process ``process_index`` of ``num_processes`` computes (round robin)."""
    if batch_size < num_processes:
        raise ConfigError(
            f"batch_size={batch_size} is smaller than the {num_processes} processes accelerate started; "
            f"use batch_size >= {num_processes} (the global batch is split across processes)."
        )
    return list(range(process_index, batch_size, num_processes))


def _distributed(num_processes: int) -> bool:
    return num_processes > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def broadcast_parameters(parameters: Iterable[torch.nn.Parameter], num_processes: int) -> None:
    """Copy the main process's values of ``parameters`` to every process, in place (as DDP does at wrap time).

    Processes that initialised their trainable tensors from different random states (an unseeded
    LoRA init) would otherwise train different models while summing their gradients.
    """
    if not _distributed(num_processes):
        return
    params = list(parameters)
    flat = torch.cat([p.detach().reshape(-1).float() for p in params])
    if "nccl" in str(torch.distributed.get_backend()):
        flat = flat.to(_scalar_device())
    torch.distributed.broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def sum_gradients(parameters: Iterable[torch.nn.Parameter], num_processes: int) -> None:
    """Sum ``p.grad`` over the processes, in place (one flattened all-reduce).

    A parameter without a gradient on this process counts as zeros, so processes never disagree
    on what is reduced.
    """
    if not _distributed(num_processes):
        return
    params = list(parameters)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n


def _scalar_device() -> torch.device:
    """Where a scalar must live to be reduced: NCCL reduces only CUDA tensors, gloo and MPI CPU ones."""
    if "nccl" in str(torch.distributed.get_backend()) and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_value(value: float, num_processes: int) -> float:
    """``value`` summed over the processes (the global-batch loss from each shard's part)."""
    if not _distributed(num_processes):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_scalar_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return float(tensor.item())


def main_decides(flag: bool, num_processes: int) -> bool:
    """The main process's ``flag`` on every process (e.g. "the time budget is spent"), so all stop together."""
    if not _distributed(num_processes):
        return bool(flag)
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_scalar_device())
    torch.distributed.broadcast(tensor, src=0)
    return bool(tensor.item())
