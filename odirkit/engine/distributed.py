"""Distributed data parallel training on PyTorch's own engine, started by ``torchrun``.

``torchrun --nproc-per-node N -m odirkit run FILE`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`setup` joins them in
a process group (NCCL on CUDA, gloo on the CPU). Then:

- every rank takes, from each global batch of the epoch's seeded order, every
  ``WORLD_SIZE``-th image starting at its rank, so the ranks together see
  exactly the batches one process would, and their gradients (averaged by
  ``DistributedDataParallel``, with each rank's loss weighted by its share of
  the batch) are those of the whole batch;
- one-time work — phantom generation, the preprocessing cache, DCGAN
  training — is done by rank 0 while the others wait (:func:`rank_zero_first`),
  then read by them;
- evaluation shards the held-out images and gathers every rank's predictions,
  so each image is evaluated exactly once;
- only rank 0 writes the run folder.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) all of this is inert.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from odirkit.errors import ConfigError, RunError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether several processes train together."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this process is rank 0 (it writes files and prints)."""
        return self.rank == 0


_WORLD = World()


def world() -> World:
    """This process's place among the processes training together."""
    return _WORLD


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return _WORLD.main


def setup(device_spec: str = "auto") -> World:
    """Join the process group ``torchrun`` describes in the environment (if any)."""
    global _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        _WORLD = World()
        return _WORLD
    if dist.is_initialized():
        return _WORLD
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_spec in ("auto", "cuda")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    _WORLD = World(rank=rank, size=size, local_rank=local_rank, backend=backend)
    return _WORLD


def teardown() -> None:
    """Leave the process group, if one was joined."""
    global _WORLD
    if dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


def barrier() -> None:
    """Wait for every process (nothing when training alone)."""
    if _WORLD.distributed:
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value``, on every rank."""
    if not _WORLD.distributed:
        return value
    box = [value if _WORLD.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not _WORLD.distributed:
        return [value]
    out: list[Any] = [None] * _WORLD.size
    dist.all_gather_object(out, value)
    return out


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (one small all-reduce)."""
    if not _WORLD.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if _WORLD.backend == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def agree_buffers(model: torch.nn.Module) -> None:
    """Make every rank's buffers equal: floating ones (batch norm's running mean and
    variance) averaged over the ranks, counters (``num_batches_tracked``) taken from rank 0.

    Without SyncBatchNorm (CUDA only) each process keeps running statistics of its
    own share of the batches; averaging them before every evaluation and checkpoint
    gives every rank the same model, and the statistics of all the batches.
    """
    if not _WORLD.distributed:
        return
    device = "cuda" if _WORLD.backend == "nccl" else "cpu"
    for buffer in model.buffers():
        if buffer.numel() == 0:
            continue
        value = buffer.detach().to(device)
        if buffer.is_floating_point():
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= _WORLD.size
        else:
            dist.broadcast(value, src=0)
        buffer.copy_(value.to(buffer.device))


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block first (building caches); the others then run it (reading).

    An error on rank 0 is shared, so every rank stops with the same message
    instead of waiting forever.

    Raises, on rank 0, the error itself; on the others a :class:`RunError` with its message."""
    if not _WORLD.distributed:
        yield
        return
    if _WORLD.main:
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failure = exc
        broadcast(None if failure is None else f"{type(failure).__name__}: {failure}")
        if failure is not None:
            raise failure
    else:
        message = broadcast(None)
        if message is not None:
            raise RunError(f"rank 0 failed while preparing: {message}")
        yield


def rank_share(chunk: np.ndarray) -> tuple[np.ndarray, float]:
    """This rank's part of a global batch, and the weight of its loss.

    A rank whose share is empty (a last batch smaller than the world) takes one
    image with weight 0, so that it still joins the gradient all-reduce.

    ``chunk`` is the global batch's row indices ``[B]``; the share is ``[b]``, about
    ``B / WORLD_SIZE``, its weight ``b * WORLD_SIZE / B`` (1 when ``B`` divides evenly)."""
    if not _WORLD.distributed:
        return chunk, 1.0
    mine = chunk[_WORLD.rank :: _WORLD.size]
    if len(mine) == 0:
        return chunk[:1], 0.0
    return mine, len(mine) * _WORLD.size / len(chunk)


def check_batch_size(batch_size: int) -> None:
    """A global batch must give every rank at least one image.

    Raises :class:`ConfigError` when ``batch_size`` is smaller than the world."""
    if _WORLD.distributed and batch_size < _WORLD.size:
        raise ConfigError(
            f"[train] batch_size = {batch_size} is smaller than the {_WORLD.size} processes; "
            "batch_size is the global batch, shared among them"
        )


def parameters_digest(model: torch.nn.Module) -> str:
    """A checksum of a model's parameters, to check that every rank holds the same."""

    digest = hashlib.sha256()
    for parameter in model.state_dict().values():
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
