"""Learning-rate schedules of the optimisation loop (optimizer.md section 9); progress t in [0, 1]."""
from __future__ import annotations

import math


def linear_schedule(t: float, start: float, end: float) -> float:
    return start + (end - start) * t


def cosine_schedule(t: float, lr_start: float, lr_end: float) -> float:
    return lr_end + (lr_start - lr_end) * (1 + math.cos(t * math.pi)) / 2


def cycled_linear_schedule(t: float, lr_start: float, lr_end: float, num_cycles: int = 2) -> float:
    """Linear decay restarted ``num_cycles`` times; t = 1 maps to the end of the last cycle."""
    tc = t * num_cycles
    frac = tc - int(tc) if tc < num_cycles else 1.0
    return linear_schedule(frac, lr_start, lr_end)


def get_lr(schedule: str, t: float, lr: float, lr_min: float) -> float:
    """Learning rate of ``schedule`` ('cosine', 'linear', 'cycle', 'cycleK') at progress ``t``."""
    if schedule == "cosine":
        return cosine_schedule(t, lr, lr_min)
    if schedule == "linear":
        return linear_schedule(t, lr, lr_min)
    if schedule.startswith("cycle"):
        k = int(schedule[5:]) if len(schedule) > 5 else 2
        return cycled_linear_schedule(t, lr, lr_min, num_cycles=k)
    raise ValueError(f"bad lr schedule {schedule!r}; use 'cosine', 'linear' or 'cycleK'")
