"""Streaming window-wise reconstruction (monst3r.streaming): chunking, equivalence with the original's
continuation mechanism, accuracy on synthetic scenes, and working memory independent of the video length
(allocated tensor bytes measured with monst3r.utils.memtrack on the CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import demo
from monst3r.datasets.synthetic import SyntheticScene
from monst3r.errors import Monst3rInputError
from monst3r.config import ReconstructConfig
from monst3r.reconstruct import reconstruct
from monst3r.streaming import reconstruct_streaming, stream_chunks
from monst3r.utils.memtrack import TensorMemoryTracker
from monst3r.utils.timing import StageTimer
from traj_helpers import ate

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def oracle(sc: SyntheticScene, noise: float = 0.01):
    """``predict(pairs)`` giving the ideal network's output (plus noise) for chunk views of ``sc``."""
    def predict(pairs):
        glob = [(int(a["instance"]), int(b["instance"])) for a, b in pairs]
        out = sc.ideal_inference(glob, noise_std=noise, scale=None, gt_dynamic_mask=False)
        out["view1"]["idx"] = [a["idx"] for a, _ in pairs]
        out["view2"]["idx"] = [b["idx"] for _, b in pairs]
        return out
    return predict


def demo_args(**kw) -> ReconstructConfig:
    """The demo's settings (its defaults, changed by ``kw``) as the reconstruction receives them."""
    a = demo.get_parser().parse_args(["--input", "unused", "--silent", "--no_sam2", "--flow_loss_weight", "0",
                                      "--device", "cpu"])
    for k, v in kw.items():
        setattr(a, k, v)
    return ReconstructConfig.from_demo_args(a)


def scene_views(n, seed=1, W=64, H=48):
    sc = SyntheticScene(width=W, height=H, num_frames=n, seed=seed, num_objects=2)
    return sc, [sc.view(k, gt_dynamic_mask=False) for k in range(n)]


@pytest.mark.parametrize("n,ws,ov,prev,expected", [
    (10, 4, 2, 0, [(0, 4, 0), (2, 6, 2), (4, 8, 2), (6, 10, 2)]),
    (9, 4, 2, 0, [(0, 4, 0), (2, 6, 2), (4, 8, 2), (5, 9, 3)]),          # last chunk: a full window
    (5, 6, 3, 0, [(0, 5, 0)]),                                          # shorter than a window: one chunk
    (200, 100, 50, 0, [(0, 100, 0), (50, 150, 50), (100, 200, 50)]),
    (20, 6, 3, 4, [(1, 7, 3), (4, 10, 3), (7, 13, 3), (10, 16, 3), (13, 19, 3), (14, 20, 5)]),
    (12, 6, 3, 10, [(6, 12, 4)]),
])
def test_stream_chunks(n, ws, ov, prev, expected):
    chunks = stream_chunks(n, ws, ov, prev)
    assert chunks == expected
    new = [f for s, e, k in chunks for f in range(s + k, e)]
    assert new == list(range(prev, n))  # every new frame exactly once, in order


@pytest.mark.parametrize("ws,ov,needle", [(2, 1, "at least 3"), (6, 0, "overlap"), (6, 6, "overlap")])
def test_stream_chunks_rejects_bad_settings(ws, ov, needle):
    with pytest.raises(Monst3rInputError, match=needle):
        stream_chunks(20, ws, ov)


def test_streaming_equals_chained_continuation():
    """Chunk 0 = the window-wise run on its frames; chunk 1 = a run continuing from chunk 0's frames (the
    original's --prev_output_dir mechanism), with the same random draws."""
    sc, views = scene_views(9)
    a = demo_args(window_size=6, window_overlap_ratio=0.5, niter=20)
    torch.manual_seed(0)
    rec = reconstruct_streaming(views, None, a, device=CPU, timer=StageTimer(), predict=oracle(sc))
    assert rec.meta["chunks"] == [[0, 6, 0], [3, 9, 3]] and rec.n_frames == 9
    assert rec.meta["image_paths"] == [v["instance"] for v in views]

    torch.manual_seed(0)
    b = demo_args(window_size=6, window_overlap_ratio=0.5, niter=20, window_wise=True)
    first = reconstruct([dict(v) for v in views[:6]], None, b, device=CPU, timer=StageTimer(),
                        predict=oracle(sc), offload_model=False)
    prev = dict(poses=list(first.poses[3:6]), depths=[torch.from_numpy(d) for d in first.depths[3:6]],
                intrinsics=torch.from_numpy(first.intrinsics[5]))
    chunk = [dict(v, idx=k) for k, v in enumerate(views[3:9])]
    second = reconstruct(chunk, None, b, device=CPU, timer=StageTimer(), prev_video_results=prev,
                         predict=oracle(sc), offload_model=False)
    assert second.n_frames == 3
    np.testing.assert_array_equal(rec.poses[:6], first.poses)
    np.testing.assert_array_equal(rec.depths[:6], first.depths)
    np.testing.assert_array_equal(rec.poses[6:], second.poses)
    np.testing.assert_array_equal(rec.depths[6:], second.depths)
    np.testing.assert_array_equal(rec.confs[6:], second.confs)
    np.testing.assert_array_equal(rec.rgb, np.stack([v["img"][0].permute(1, 2, 0).numpy() * 0.5 + 0.5
                                                     for v in views]))


@pytest.mark.slow
def test_streaming_recovers_the_trajectory_as_the_window_mode_does():
    sc, views = scene_views(16)
    errs = {}
    for mode in ("stream", "window"):
        a = demo_args(window_size=6, window_overlap_ratio=0.5, niter=150, window_wise=mode == "window")
        torch.manual_seed(0)
        run = reconstruct_streaming if mode == "stream" else reconstruct
        rec = run(views, None, a, device=CPU, timer=StageTimer(), predict=oracle(sc))
        assert rec.n_frames == 16 and np.isfinite(rec.poses).all()
        errs[mode] = ate(rec.poses, sc.poses)
    extent = np.linalg.norm(np.diff(sc.poses[:, :3, 3], axis=0), axis=1).sum()
    assert errs["stream"] < 0.02 * extent, errs
    assert errs["stream"] <= 1.5 * errs["window"] + 1e-3, errs


def _peak_bytes(n, window_wise_mode=False):
    sc, views = scene_views(n)
    a = demo_args(window_size=6, window_overlap_ratio=0.5, niter=5, window_wise=window_wise_mode)
    predict = oracle(sc)
    torch.manual_seed(0)
    with TensorMemoryTracker() as mem:
        if window_wise_mode:
            reconstruct(views, None, a, device=CPU, timer=StageTimer(), predict=predict)
        else:
            reconstruct_streaming(views, None, a, device=CPU, timer=StageTimer(), predict=predict)
    return mem.peak_bytes


@pytest.mark.slow
def test_streaming_memory_does_not_grow_with_frame_count():
    small, large = _peak_bytes(12), _peak_bytes(30)
    assert small > 1e6
    assert large <= small * 1.02, (small, large)
    # the measurement sees growth where there is some: the original's window mode holds every pair at once
    assert _peak_bytes(30, True) > 2 * _peak_bytes(12, True)


@pytest.fixture(scope="module")
def tiny_nets(golden):
    import json

    from golden_weights import golden_state_dict
    from monst3r.model import model_from_string
    from test_flow import small_config
    from third_party.raft import SEARAFT

    man = json.loads(golden("model", "tiny_linear_manifest.json").read_text())
    model = model_from_string(man["model_string"]).eval()
    model.load_state_dict(golden_state_dict(man))
    torch.manual_seed(0)
    return model, SEARAFT(small_config()).eval()


@pytest.mark.slow
def test_pair_cache_reuses_predictions_and_flows_of_the_overlap(tiny_nets):
    from monst3r.cloud_opt import global_aligner
    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference
    from monst3r.streaming import PairCache

    model, flow = tiny_nets
    sc, views = scene_views(9, W=160, H=128)  # SEA-RAFT needs >= 121 px
    a = demo_args(batch_size=4, flow_loss_weight=0.01)
    cache = PairCache(model, CPU, a, flow)
    chunks = [[dict(v, idx=k) for k, v in enumerate(views[s:e])] for s, e in ((0, 6), (3, 9))]
    pairs = [make_pairs(c, scene_graph="swinstride-2-noncyclic", symmetrize=True) for c in chunks]
    cache.set_chunk(0)
    cache.predict(pairs[0])
    cache.flows_for(pairs[0])
    cache.prune(3)
    cache.set_chunk(3)
    got = cache.predict(pairs[1])
    assert cache.reused_pairs > 0 and cache.computed_pairs + cache.reused_pairs == len(pairs[0]) + len(pairs[1])
    ref = inference(pairs[1], model, CPU, batch_size=4, verbose=False)
    for side, key in (("pred1", "pts3d"), ("pred1", "conf"), ("pred2", "pts3d_in_other_view"), ("pred2", "conf")):
        torch.testing.assert_close(got[side][key], ref[side][key], rtol=1e-5, atol=1e-5)
    assert got["view1"]["idx"] == ref["view1"]["idx"] and got["view2"]["idx"] == ref["view2"]["idx"]
    torch.testing.assert_close(got["view1"]["img"], ref["view1"]["img"])
    # flows: what the optimizer computes itself for this chunk
    fij, fji, vi, vj = cache.flows_for(pairs[1])
    assert cache.reused_flows > 0
    scene = global_aligner(ref, device=CPU, flow_model=flow, flow_loss_weight=0.01, use_self_mask=True,
                           sam2_mask_refine=False, verbose=False)
    torch.testing.assert_close(fij, scene.flow_ij, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fji, scene.flow_ji, rtol=1e-4, atol=1e-4)
    assert torch.equal(vi.reshape(scene.flow_valid_mask_i.shape), scene.flow_valid_mask_i)
    assert cache.preds and min(min(k) for k in cache.preds) >= 3


@pytest.mark.slow
def test_streaming_with_the_network_and_flow(tiny_nets):
    model, flow = tiny_nets
    sc, views = scene_views(9, W=160, H=128)  # SEA-RAFT needs >= 121 px
    from test_flow import FakePredictor

    a = demo_args(window_size=6, window_overlap_ratio=0.5, niter=5, flow_loss_weight=0.01, winsize=2,
                  batch_size=4, no_sam2=False)
    torch.manual_seed(0)
    sam2 = FakePredictor()
    rec = reconstruct_streaming(views, model, a, device=CPU, timer=StageTimer(), flow_model=flow,
                                sam2_predictor=sam2)
    assert rec.n_frames == 9 and np.isfinite(rec.poses).all() and np.isfinite(rec.depths).all()
    assert rec.meta["pairs_reused"] > 0 and rec.meta["flows_reused"] > 0
    assert rec.meta["mask_source"] == "self" and rec.meta["sam2"] == "refined"
    assert [c for c in sam2.calls if c[0] == "init"] == [("init", 6), ("init", 6)]  # one predictor, two chunks
    assert set(rec.meta["timings"]) >= {"flows", "self_masks", "sam2", "init", "loop"}


def test_streaming_continues_a_previous_result():
    """prev_video_results (as demo.py --prev_output_dir loads it): its frames lead the view list, are frozen, and
    only the new frames are returned; the stream starts from the previous frames' poses."""
    sc, views = scene_views(14)
    a = demo_args(window_size=6, window_overlap_ratio=0.5, niter=100)
    torch.manual_seed(0)
    first = reconstruct_streaming(views[:8], None, a, device=CPU, timer=StageTimer(), predict=oracle(sc))
    prev = dict(poses=[p for p in first.poses[4:8]], depths=torch.from_numpy(np.asarray(first.depths[4:8])),
                intrinsics=torch.from_numpy(first.intrinsics[7]))
    rest = reconstruct_streaming(views[4:], None, a, device=CPU, timer=StageTimer(), prev_video_results=prev,
                                 predict=oracle(sc))
    assert rest.meta["chunks"] == [[1, 7, 3], [4, 10, 3]]
    assert rest.n_frames == 6
    both = np.concatenate([first.poses, rest.poses])
    extent = np.linalg.norm(np.diff(sc.poses[:, :3, 3], axis=0), axis=1).sum()
    assert ate(both, sc.poses) < 0.03 * extent
    # the first new frame is placed next to the last previous one (same scale and world frame)
    step = np.linalg.norm(rest.poses[0][:3, 3] - first.poses[7][:3, 3])
    gt_step = np.linalg.norm(sc.poses[8][:3, 3] - sc.poses[7][:3, 3])
    scale = np.linalg.norm(first.poses[7][:3, 3] - first.poses[0][:3, 3]) / np.linalg.norm(
        sc.poses[7][:3, 3] - sc.poses[0][:3, 3])
    assert abs(step - scale * gt_step) < 0.5 * scale * gt_step + 1e-6
