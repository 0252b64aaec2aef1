"""Process runtime shared by the demo, training and evaluation: devices, process groups, ranks, collectives,
seeds and peak memory.

One module for what used to exist three times (``training.py``, ``eval/runtime.py``, ``utils/device.py``).

Process groups (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL on CUDA, Gloo otherwise, all created
with the ONE timeout :data:`PROCESS_GROUP_TIMEOUT` (2 h). Differs from before: training and evaluation used
3600 s, the demo 2 h; the demo's is kept because there the other ranks wait in the next collective while rank 0
optimises a whole sequence (the longest legitimate wait of the three); a timeout only matters for a hung run.

* :func:`init_distributed_mode` (training: fills ``args.distributed/rank/world_size/gpu``),
  :func:`init_distributed` / :func:`finish_distributed` (evaluation: create the group only under torchrun, end
  it only if created), :func:`init_distributed_from_env` (demo: only when ``WORLD_SIZE`` > 1, returns the device);
* :func:`get_rank`, :func:`get_world_size`, :func:`rank_world`, :func:`is_main_process`, :func:`barrier`,
  :func:`all_gather` (python objects), :func:`all_reduce_mean` (python floats), :func:`split_for_rank`;
* :func:`seed_everything`, :func:`epoch_seed`;
* devices: :func:`resolve_device` (``--device auto|cpu|cuda[:N]|mps``), :func:`resolve_rank_device` (training:
  plain ``cuda`` -> ``cuda:LOCAL_RANK``), :func:`resolve_eval_device` (plain ``cuda`` -> current GPU);
* :func:`peak_memory_gib`, :func:`unwrap`.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import random
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)

#: The timeout of every process group this project creates (see the module docstring).
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


# ============================================================================================== devices
def resolve_device(name: str | None = "auto") -> torch.device:
    """``'auto'`` / ``None`` -> cuda if available else cpu; ``'cuda[:k]'`` without a GPU is a clear error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise Monst3rInputError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Monst3rInputError(f"--device {name} was requested but no CUDA GPU is available on this machine; "
                                    "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise Monst3rInputError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise Monst3rInputError(f"--device {name} is not available here; use --device cpu")
    return dev


def resolve_rank_device(args: argparse.Namespace) -> torch.device:
    """Training's ``--device`` (auto -> cuda:LOCAL_RANK when available, else cpu); plain ``cuda`` gets the local
    rank ``args.gpu`` set by :func:`init_distributed_mode`."""
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        dev = f"cuda:{getattr(args, 'gpu', 0)}"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise Monst3rInputError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(dev)


def resolve_eval_device(device: str = "auto") -> torch.device:
    """Evaluation's ``--device`` (auto: cuda when available); a bare ``cuda`` becomes the process's current GPU."""
    dev = resolve_device(device or "auto")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated on ``device`` (GiB), or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (evaluation needs no gradient sync)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ============================================================================================== process groups
def _wants_cuda(device: str) -> bool:
    return (device == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")


def init_distributed_mode(args: argparse.Namespace) -> None:
    """torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) -> process group (NCCL on CUDA, Gloo
    otherwise) and ``args.distributed/rank/world_size/gpu``; single process otherwise."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        args.rank = int(os.environ["RANK"])
        args.world_size = int(os.environ["WORLD_SIZE"])
        args.gpu = int(os.environ.get("LOCAL_RANK", 0))
    else:
        args.rank, args.world_size, args.gpu = 0, 1, 0
        args.distributed = False
        return
    args.distributed = True
    use_cuda = _wants_cuda(args.device)
    if use_cuda:
        torch.cuda.set_device(args.gpu)
    args.dist_backend = "nccl" if use_cuda else "gloo"
    log.info("| distributed init (rank %d, world %d, backend %s): %s", args.rank, args.world_size,
             args.dist_backend, args.dist_url)
    extra = {"device_id": torch.device("cuda", args.gpu)} if use_cuda else {}
    dist.init_process_group(backend=args.dist_backend, init_method=args.dist_url, world_size=args.world_size,
                            rank=args.rank, timeout=PROCESS_GROUP_TIMEOUT, **extra)
    dist.barrier()


def init_distributed(args: argparse.Namespace) -> bool:
    """Create the process group from the torchrun environment (``RANK``, ``WORLD_SIZE``) unless one exists or the
    process was not started by torchrun. Returns True when this call created it (then the caller ends it with
    :func:`finish_distributed`)."""
    if (dist.is_available() and dist.is_initialized()) or "RANK" not in os.environ or \
            "WORLD_SIZE" not in os.environ:
        return False
    if not hasattr(args, "dist_url"):
        args.dist_url = "env://"
    if not hasattr(args, "device"):
        args.device = "auto"
    init_distributed_mode(args)
    return dist.is_initialized()


def finish_distributed(created: bool) -> None:
    """Barrier, then destroy the process group if :func:`init_distributed` created it."""
    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def init_distributed_from_env(device: torch.device) -> torch.device:
    """Join the process group when launched by ``torchrun`` with several processes (``WORLD_SIZE`` > 1):
    NCCL on CUDA (each process on ``cuda:LOCAL_RANK``), Gloo on the CPU. Returns the device this process uses.
    Single process (no ``WORLD_SIZE``, or 1): does nothing and returns ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise Monst3rInputError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                                    "start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return device


# ============================================================================================== ranks, collectives
def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True in a single process or on rank 0 of an initialised process group."""
    return not _initialized() or dist.get_rank() == 0


def get_world_size() -> int:
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if _initialized() else 0


def rank_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    return get_rank(), get_world_size()


def barrier() -> None:
    if _initialized():
        dist.barrier()


def comm_device() -> torch.device:
    """Where collective tensors live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(x: float) -> float:
    """Mean of a python float over the processes."""
    if get_world_size() == 1:
        return x
    t = torch.tensor(x, dtype=torch.float64, device=comm_device())
    dist.all_reduce(t)
    return float(t) / get_world_size()


def all_gather(obj: Any) -> list[Any]:
    """Every process's ``obj`` in rank order (``[obj]`` without a process group)."""
    if not _initialized() or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def split_for_rank(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank r takes ``items[r * per : (r + 1) * per]`` with ``per = ceil(n / world)`` (the original's split)."""
    per = math.ceil(len(items) / max(world, 1))
    return list(items[rank * per:min((rank + 1) * per, len(items))])


# ============================================================================================== seeds
def seed_everything(seed: int) -> None:
    """Seed torch, numpy (``seed mod 2**32``) and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """Deterministic per (seed, rank, epoch) seed used to re-seed the global RNGs at each training epoch."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(epoch)]).generate_state(1)[0])
