"""Peak bytes of live torch tensors created inside a block, on any device (CPU included).

``torch.cuda.max_memory_allocated`` only exists for CUDA; on the CPU the process RSS mixes the allocator's
caching, numpy, Python and the libraries. :class:`TensorMemoryTracker` counts exactly the storages that the
operators run inside the ``with`` block allocate, and when they are freed, so benchmarks and tests can compare
the working memory of two runs on this machine::

    with TensorMemoryTracker() as mem:
        run()
    mem.peak_bytes, mem.current_bytes        # peak / still live at the end (bytes)

Storages that existed before the block (model weights, inputs) are not counted, nor are views (they share a
storage), in-place results, or memory allocated by numpy. It works through a ``TorchDispatchMode``, which
adds some Python overhead per operator: use it in tests and benchmarks, not in production runs. Autograd's
backward pass runs in the calling thread on the CPU, so its allocations are seen; CUDA backward runs in
another thread (use ``torch.cuda.max_memory_allocated`` there).
"""
from __future__ import annotations

import threading
import weakref
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemoryTracker(TorchDispatchMode):
    """Tracks live tensor bytes allocated inside the block; ``peak_bytes``, ``current_bytes``, ``by_device``."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._live: dict[tuple[str, int], int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.by_device: dict[str, int] = defaultdict(int)       # current bytes per device
        self.peak_by_device: dict[str, int] = defaultdict(int)  # peak bytes per device

    def _freed(self, key: tuple[str, int], nbytes: int) -> None:
        with self._lock:
            if self._live.pop(key, None) is not None:
                self.current_bytes -= nbytes
                self.by_device[key[0]] -= nbytes

    def _record(self, t: torch.Tensor) -> None:
        try:
            s = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse, nested, ...
            return
        n = s.nbytes()
        if n == 0 or s.device.type == "meta":
            return
        key = (str(s.device), s.data_ptr())
        with self._lock:
            if key in self._live:
                return
            self._live[key] = n
            self.current_bytes += n
            self.by_device[key[0]] += n
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            self.peak_by_device[key[0]] = max(self.peak_by_device[key[0]], self.by_device[key[0]])
        weakref.finalize(s, self._freed, key, n)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._record(t)
        return out

    def reset_peak(self) -> None:
        """Restart the peak from the bytes live now."""
        with self._lock:
            self.peak_bytes = self.current_bytes
            for k in list(self.peak_by_device):
                self.peak_by_device[k] = self.by_device[k]
