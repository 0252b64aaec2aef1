"""Allocation stability of the optimisation loops (memory that does not grow with the number of iterations).

On the CPU the process RSS grew with ``niter`` while the live tensor bytes stayed constant: one small tensor per
iteration (the recorded loss and flow values) stayed alive in the middle of each iteration's freed working memory,
fragmenting the C heap (bench/bench_rss.py measures the RSS). These tests observe every tensor the operators create
(a ``TorchDispatchMode``; deterministic, no timing and no RSS):

* nothing created in an iteration is still alive when a later iteration starts (after a warm-up iteration, which
  creates the optimizer's state);
* each iteration allocates the same number of tensors of the same sizes (after the warm-up and once the flow term
  is active), so the allocator can reuse the previous iteration's blocks.
"""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from monst3r.cloud_opt import global_aligner
from monst3r.datasets.synthetic import SyntheticScene

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

DEMO = dict(shared_focal=True, temporal_smoothing_weight=0.01, translation_weight=1.0, flow_loss_weight=0.01,
            flow_loss_start_epoch=0.0, flow_loss_thre=25, use_self_mask=False, sam2_mask_refine=False,
            verbose=False)
NITER = 8
WARMUP = 2  # iteration 0 creates the optimizer state


@pytest.fixture(scope="module")
def scene():
    n, W, H = 6, 64, 48
    sc = SyntheticScene(width=W, height=H, num_frames=n, seed=3, num_objects=1)
    fw = [(i, i + k) for i in range(n) for k in (1, 2) if i + k < n]
    pairs = fw + [(j, i) for i, j in fw]
    out = sc.ideal_inference(pairs, noise_std=0.02, scale=None, gt_dynamic_mask=True)
    fij = torch.tensor(np.stack([sc.flow(i, j)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    fji = torch.tensor(np.stack([sc.flow(j, i)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    return out, (fij, fji)


class _IterationAllocations(TorchDispatchMode):
    """Records, per iteration, the new storages the operators create (op, bytes) and weak references to every
    tensor they return. The iteration counter is advanced by the wrapped loss (one call per iteration)."""

    def __init__(self):
        super().__init__()
        self.it = -1
        self.allocs: dict[int, list[tuple[str, int]]] = {}
        self.tensors: list[tuple[int, str, weakref.ref]] = []
        self.violations: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.it < 0:
            return out
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.layout == torch.strided}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                s = t.untyped_storage()
                if s.nbytes() and s.data_ptr() not in inputs:  # a new allocation (not a view / in-place result)
                    self.allocs.setdefault(self.it, []).append((str(func), s.nbytes()))
                self.tensors.append((self.it, str(func), weakref.ref(t)))
        return out

    def start_iteration(self) -> None:
        """Called at the start of every iteration: tensors of earlier iterations (after the warm-up) must be dead."""
        gc.collect()
        self.it += 1
        alive = [(it, op) for it, op, r in self.tensors if WARMUP <= it < self.it and r() is not None]
        if alive:
            self.violations.append(f"iteration {self.it}: alive from earlier iterations: {alive[:5]}")
        self.tensors = [x for x in self.tensors if x[2]() is not None]


def _run(monkeypatch, out, flows, niter=NITER, **kw):
    """Optimise ``niter`` iterations under the recording mode. An iteration starts after the optimizer's
    ``zero_grad`` (called first in every iteration of both loops, before the variables are decoded)."""
    from monst3r.cloud_opt import adam_loop
    net = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "num_total_iter": niter, **kw})
    net.initialize("mst")
    mode = _IterationAllocations()
    real_make_adam = adam_loop.make_adam

    def make_adam(params, lr):
        adam = real_make_adam(params, lr)
        zero_grad = adam.zero_grad

        def counted(*a, **k):
            zero_grad(*a, **k)  # (frees the previous iteration's gradients)
            mode.start_iteration()
        adam.zero_grad = counted
        return adam
    monkeypatch.setattr(adam_loop, "make_adam", make_adam)
    with mode:
        net.compute_global_alignment(init=None, niter=niter, schedule="linear", lr=0.01)
    return net, mode


@pytest.mark.parametrize("kw", [dict(), dict(batchify=False, faithful=True), dict(chunk_size=3)],
                         ids=["batched", "nonbatched_faithful", "chunk3"])
def test_global_loop_keeps_nothing_per_iteration_and_allocates_the_same(scene, kw, monkeypatch):
    net, mode = _run(monkeypatch, *scene, **kw)
    assert not mode.violations, mode.violations
    assert len(net.history["loss"]) == NITER and all(np.isfinite(net.history["loss"]))
    assert max(net.history["flow"]) > 0  # the flow term ran
    sigs = [mode.allocs[i] for i in range(WARMUP, NITER - 1)]  # (the last one also builds the history)
    assert sigs[0], "no allocation recorded"
    for i, s in enumerate(sigs[1:], WARMUP + 1):
        assert s == sigs[0], f"iteration {i} allocates differently from iteration {WARMUP}"


def test_window_loop_keeps_nothing_per_iteration(scene, monkeypatch):
    net, mode = _run(monkeypatch, *scene, window_wise=True, window_size=4, window_overlap_ratio=0.5)
    # iterations 0..NITER-1 are window 0 and NITER.. window 1; the first iterations of each window create the
    # window's optimizer state, so only the steady iterations of window 0 are checked for survivors here
    late = [v for v in mode.violations if int(v.split()[1].rstrip(":")) < NITER]
    assert not late, late
    assert len(net.history["loss"]) == 2 * NITER
    sigs = [mode.allocs[i] for i in range(WARMUP, NITER - 1)]  # (the last one also builds the history)
    for i, s in enumerate(sigs[1:], WARMUP + 1):
        assert s == sigs[0], f"iteration {i} allocates differently from iteration {WARMUP}"


def test_loop_record_matches_returned_loss(scene):
    out, flows = scene
    net = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "num_total_iter": 5})
    loss = net.compute_global_alignment(init="mst", niter=5, schedule="linear", lr=0.01)
    assert isinstance(loss, float) and loss == net.history["loss"][-1]
    assert len(net.history["lr"]) == 5 and net.history["lr"][0] == 0.01
    # max_iters stops early: only the iterations run are recorded
    net2 = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "num_total_iter": 5})
    net2.compute_global_alignment(init="mst", niter=5, schedule="linear", lr=0.01, max_iters=2)
    assert net2.history["loss"] == net.history["loss"][:2]
