"""Bad input to the global aligner raises Monst3rInputError with a message that says what to do."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from monst3r.cloud_opt import GlobalAlignerMode, feed_forward_reconstruction, global_aligner
from monst3r.errors import Monst3rInputError


def tiny_output(pairs, H=6, W=8, seed=0):
    """A random but well-formed inference() dict for ``pairs``."""
    g = torch.Generator().manual_seed(seed)
    E = len(pairs)

    def view(col):
        idx = [p[col] for p in pairs]
        return dict(img=torch.rand(E, 3, H, W, generator=g) * 2 - 1, idx=idx, instance=[str(i) for i in idx],
                    true_shape=torch.tensor([[H, W]] * E), mask=torch.ones(E, H, W, dtype=torch.bool),
                    dynamic_mask=torch.zeros(E, H, W, dtype=torch.bool))
    pts = lambda: torch.rand(E, H, W, 3, generator=g) + torch.tensor([0, 0, 2.0])  # noqa: E731
    conf = lambda: 1 + torch.rand(E, H, W, generator=g) * 5  # noqa: E731
    return dict(view1=view(0), view2=view(1), pred1=dict(pts3d=pts(), conf=conf()),
                pred2=dict(pts3d_in_other_view=pts(), conf=conf()))


SYM3 = [(0, 1), (1, 2), (1, 0), (2, 1)]


def aligner(out, **kw):
    return global_aligner(out, device="cpu", verbose=False, **kw)


def test_good_tiny_input_builds():
    net = aligner(tiny_output(SYM3))
    assert net.n_imgs == 3 and net.is_symmetrized


@pytest.mark.parametrize("pairs,match", [
    ([(0, 0)], "itself"),
    ([], "no image pairs"),
    ([(0, 2), (2, 0)], r"0\.\.1"),
])
def test_too_few_or_bad_indices(pairs, match):
    if not pairs:
        out = tiny_output([(0, 1)])
        for d in out.values():
            for k in list(d):
                d[k] = d[k][:0]
    else:
        out = tiny_output(pairs)
    with pytest.raises(Monst3rInputError, match=match):
        aligner(out)


def test_mismatched_shapes():
    out = tiny_output(SYM3)
    out["pred1"]["conf"] = out["pred1"]["conf"][:, :5]
    with pytest.raises(Monst3rInputError, match="confidence"):
        aligner(out)
    out = tiny_output(SYM3)
    out["pred2"]["conf"] = out["pred2"]["conf"][:3]
    with pytest.raises(Monst3rInputError, match="pairs"):
        aligner(out)
    out = tiny_output(SYM3)
    out["pred1"]["pts3d"] = out["pred1"]["pts3d"][..., :2]
    with pytest.raises(Monst3rInputError, match=r"\[H, W, 3\]"):
        aligner(out)
    out = tiny_output(SYM3)  # image 1 has two different sizes
    p = list(out["pred2"]["pts3d_in_other_view"])
    c = list(out["pred2"]["conf"])
    p[0], c[0] = p[0][:, :7], c[0][:, :7]
    out["pred2"]["pts3d_in_other_view"], out["pred2"]["conf"] = p, c
    with pytest.raises(Monst3rInputError, match="same size"):
        aligner(out)
    out = tiny_output(SYM3)
    out["view1"]["img"] = out["view1"]["img"][..., :7]
    with pytest.raises(Monst3rInputError, match="images and predictions"):
        aligner(out)
    out = tiny_output(SYM3)
    out["pred1"]["pts3d"][0, 0, 0, 0] = float("nan")
    with pytest.raises(Monst3rInputError, match="NaN"):
        aligner(out)
    with pytest.raises(Monst3rInputError, match="lacks"):
        global_aligner({"view1": {}}, device="cpu")


def test_bad_options():
    out = tiny_output(SYM3)
    with pytest.raises(Monst3rInputError, match="flow_ij"):
        aligner(out, flow_loss_weight=0.01, flows=(torch.zeros(4, 2, 5, 8), torch.zeros(4, 2, 5, 8)))
    with pytest.raises(Monst3rInputError, match="dynamic_masks"):
        aligner(out, dynamic_masks=np.zeros((2, 6, 8), bool))
    with pytest.raises(Monst3rInputError, match="window_size"):
        aligner(out, window_wise=True, window_size=5).compute_global_alignment(init="mst", niter=2)
    with pytest.raises(Monst3rInputError, match="symmetrized"):
        aligner(tiny_output([(0, 1), (1, 2)]), flow_loss_weight=0.01, use_self_mask=True,
                flows=(torch.zeros(2, 2, 6, 8), torch.zeros(2, 2, 6, 8)))
    net = aligner(out)
    with pytest.raises(Monst3rInputError, match="pose for every image"):
        net.compute_global_alignment(init="known_poses", niter=2)
    with pytest.raises(Monst3rInputError, match="one per image"):
        net.preset_depthmap([np.ones((6, 8))])
    with pytest.raises(Monst3rInputError, match=r"\[3, 3\]"):
        net.preset_intrinsics(np.ones((3, 4)))
    with pytest.raises(ValueError, match="init"):
        net.compute_global_alignment(init="random", niter=2)
    with pytest.raises(Monst3rInputError, match="PointCloudOptimizer"):
        global_aligner(tiny_output(SYM3), device="cpu", mode=GlobalAlignerMode.PairViewer)
    with pytest.raises(NotImplementedError):
        global_aligner(tiny_output(SYM3), device="cpu", mode=GlobalAlignerMode.ModularPointCloudOptimizer)
    prev = dict(depths=[np.ones((6, 8))] * 3, poses=[np.eye(4)] * 3, intrinsics=np.eye(3))
    with pytest.raises(Monst3rInputError, match="new ones"):
        aligner(out, prev_video_results=prev)
    with pytest.raises(Monst3rInputError, match="oneref"):
        feed_forward_reconstruction(tiny_output([(1, 0), (2, 1)]), ref_idx=1)


def test_lists_and_batched_leading_dims_are_accepted():
    """Per-edge lists with a leading batch dim of 1 (as some callers build them) are accepted."""
    out = tiny_output(SYM3)
    out2 = copy.deepcopy(out)
    out2["pred1"]["pts3d"] = [p[None] for p in out["pred1"]["pts3d"]]
    out2["pred1"]["conf"] = [c[None] for c in out["pred1"]["conf"]]
    out2["view1"]["idx"] = torch.tensor(out["view1"]["idx"])
    a, b = aligner(out), aligner(out2)
    torch.testing.assert_close(a._pred_t, b._pred_t)
    assert b.edges == a.edges
