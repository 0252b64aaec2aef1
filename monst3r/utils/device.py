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
