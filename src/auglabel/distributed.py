"""torchrun integration: process-group setup and exact reductions.

The same command runs as one process (no torchrun) or as ``torchrun --nproc_per_node N``:
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` come from the environment torchrun sets.  gloo is used on
CPU, nccl on CUDA.  gloo has no AVG reduction, so everything here sums and divides.

A process group is created with a timeout (``train.collective_timeout_s``): when one process dies, the
others fail their next collective at once (gloo: connection reset) or after the timeout (a hung peer; nccl's
watchdog), and :func:`lost_peer_error` turns the backend's message into one line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import ConfigError, DistributedError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (this process's local GPU) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available")
    if name not in ("cpu", "mps"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def setup(device_name: str = "auto", timeout_s: float | None = None) -> DistContext:
    """Initialise the process group when launched by torchrun (collectives time out after ``timeout_s``
    seconds; None: PyTorch's default); otherwise a 1-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", **timeout)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Leave the process group; every process first waits for the others, so none exits (and tears down
    its gloo threads) while a peer is still in its last collective."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer already gone: nothing left to wait for
            pass
        dist.destroy_process_group()


_PEER_SIGNS = ("connection reset", "connection closed", "timed out", "timeout", "broken pipe", "nccl", "gloo",
               "socket", "peer")


def is_communication_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a collective whose peer died, hung or went away."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and is_distributed() and any(sign in text for sign in _PEER_SIGNS)


def lost_peer_error(exc: BaseException, rank: int, world_size: int, where: str) -> DistributedError:
    """One line for a failed collective; the process group is torn down (so the process exits cleanly)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". This is typically")[0].rstrip(". ")
    try:
        teardown()
    except Exception:  # noqa: BLE001 - the group is broken anyway
        pass
    return DistributedError(f"process {rank} of {world_size}: another process died or stopped answering {where} "
                            f"({first}); stopping. Restart the job with --resume to continue from the last checkpoint")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def communication_device() -> torch.device:
    """Device that collective tensors must live on for the active backend (nccl needs CUDA)."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes (returns a new tensor on the input's device)."""
    if not is_distributed():
        return tensor
    work = tensor.detach().to(communication_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank ``src`` to every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if not is_distributed():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if is_distributed():
        dist.barrier()
