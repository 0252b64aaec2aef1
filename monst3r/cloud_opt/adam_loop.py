"""The optimisation loop (optimizer.md section 9): ONE Adam loop for the global and the window-wise modes.

:func:`run_adam` runs Adam (betas 0.9, 0.9) with a learning-rate schedule over given parameters, calling a
``step(it)`` function that computes the loss and its gradients; :func:`global_alignment_loop` (the original's
name) runs it over every trainable parameter of a scene, and the window-wise mode over each window's own copies
(``PointCloudOptimizer._optimize_window``). Allocation-stable: nothing created in an iteration outlives it
(:class:`LoopRecord`), so the process memory does not grow with ``niter`` (tests/test_optimizer_memory.py).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from monst3r.cloud_opt.lr_schedules import get_lr

log = logging.getLogger(__name__)


class LoopRecord:
    """Per-iteration loss, flow value and learning rate of an optimisation loop, in buffers allocated once.

    Allocation stability (long runs): keeping one small tensor per iteration alive (a list of detached losses)
    leaves a small live block in the middle of every iteration's freed working memory; on the CPU the C heap can
    then not coalesce those holes, the next iteration's large blocks no longer fit, and the process RSS grows with
    the number of iterations while the live tensor bytes stay constant (measured: +0.4 MiB per iteration, 8
    frames at 224x224). Writing each value into a preallocated ``[niter]`` buffer (an in-place copy on the
    loss's device: no host synchronisation per iteration) leaves nothing of an iteration alive after it.
    """

    def __init__(self, n: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.loss = torch.zeros(n, dtype=dtype, device=device)
        self.flow = torch.zeros(n, dtype=dtype, device=device)
        self.lr = [0.0] * n  # floats preallocated too (Python small objects, outside the C heap's large blocks)
        self.n = 0

    def put(self, it: int, loss: torch.Tensor, flow, lr: float) -> None:
        self.loss[it].copy_(loss.detach())
        if isinstance(flow, torch.Tensor):
            self.flow[it].copy_(flow.detach())
        else:
            self.flow[it].fill_(float(flow))
        self.lr[it] = lr
        self.n = it + 1

    def last_loss(self) -> float | None:
        return float(self.loss[self.n - 1]) if self.n else None

    def extend_history(self, history: dict) -> None:
        """Append the recorded iterations to ``history['loss' | 'flow' | 'lr']`` (Python floats)."""
        if not self.n:
            return
        history["loss"].extend(self.loss[:self.n].double().cpu().tolist())
        history["flow"].extend(self.flow[:self.n].double().cpu().tolist())
        history["lr"].extend(self.lr[:self.n])


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the original's betas (0.9, 0.9), eps 1e-8, no weight decay; the fused implementation when this
    torch build has it (same update rule, one kernel for all parameters)."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))


def run_adam(params: Sequence[torch.nn.Parameter], step: Callable[[int], tuple], history: dict, *,
             lr: float = 0.01, niter: int = 300, schedule: str = "cosine", lr_min: float = 1e-3,
             max_iters: int | None = None, verbose: bool = True, desc: str = "global alignment",
             empty_cache: bool = False) -> float | None:
    """Adam over ``params`` (non-empty) with the ``schedule`` learning rate; ``step(it)`` returns (loss, flow value)
    after the backward pass of iteration ``it`` (gradients written into the parameters).

    Records into ``history`` (loss before each step, flow value, lr) and returns the last loss (None when no
    iteration ran). ``max_iters``: stop after that many iterations of the ``niter`` schedule (tests, benchmarks).
    ``empty_cache``: free the CUDA cache before every iteration (the original's option).
    """
    optimizer = make_adam(params, lr)
    n_run = niter if max_iters is None else min(niter, max_iters)
    device = params[0].device
    rec = LoopRecord(n_run, device, params[0].dtype)
    bar = tqdm(total=niter, disable=not verbose, desc=desc, leave=False)
    try:
        for it in range(n_run):
            cur_lr = get_lr(schedule, it / niter, lr, lr_min)
            for g in optimizer.param_groups:
                g["lr"] = cur_lr
            optimizer.zero_grad(set_to_none=True)
            if empty_cache and device.type == "cuda":
                torch.cuda.empty_cache()
            loss, flow = step(it)
            optimizer.step()
            rec.put(it, loss, flow, cur_lr)
            del loss, flow  # nothing of this iteration outlives it (see LoopRecord)
            bar.update()
            if verbose and (it % 25 == 0 or it == niter - 1):
                bar.set_postfix(lr=f"{cur_lr:g}", loss=rec.last_loss())
    finally:
        bar.close()
    rec.extend_history(history)
    return rec.last_loss()


def global_alignment_loop(net, lr: float = 0.01, niter: int = 300, schedule: str = "cosine", lr_min: float = 1e-3,
                          temporal_smoothing_weight=None, depth_map_save_dir=None, max_iters: int | None = None):
    """:func:`run_adam` over every trainable parameter of the scene ``net`` (its ``loss_and_backward``).

    Returns the last loss as a float, or the net itself when nothing is trainable (as the original).
    ``temporal_smoothing_weight`` is accepted and unused, as in the original loop.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        return net
    if depth_map_save_dir is not None:
        log.warning("depth_map_save_dir is not supported; ignored")
    last = run_adam(params, lambda it: net.loss_and_backward(epoch=it), net.history, lr=lr, niter=niter,
                    schedule=schedule, lr_min=lr_min, max_iters=max_iters, verbose=net.verbose,
                    empty_cache=net.empty_cache)
    return last if last is not None else net
