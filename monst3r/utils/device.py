"""Device selection: one ``--device`` flag (``auto`` = cuda when available, else cpu)."""
from __future__ import annotations

import torch

from monst3r.errors import Monst3rInputError


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


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated on ``device`` (GiB), or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def init_distributed_from_env(device: torch.device) -> torch.device:
    """Join the process group when launched by ``torchrun`` with several processes (``WORLD_SIZE`` > 1):
    NCCL on CUDA (each process on ``cuda:LOCAL_RANK``), Gloo on the CPU. Returns the device this process uses.
    Single process (no ``WORLD_SIZE``, or 1): does nothing and returns ``device``."""
    import datetime
    import os

    import torch.distributed as dist

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
        # long timeout: the other ranks wait in the next collective while rank 0 optimises
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=2))
    return device


def is_main_process() -> bool:
    """True in a single process or on rank 0 of an initialised process group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
