"""Global optimizer on synthetic dynamic scenes (monst3r.datasets.synthetic) fed with ideal pairwise predictions
plus noise and ground-truth optical flow: recovery bounds, modes, presets, masks, degenerate inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monst3r.cloud_opt import GlobalAlignerMode, feed_forward_reconstruction, global_aligner
from monst3r.datasets.synthetic import SyntheticScene
from traj_helpers import ate

DEMO = dict(shared_focal=True, temporal_smoothing_weight=0.01, translation_weight=1.0, flow_loss_weight=0.01,
            flow_loss_start_epoch=0.1, flow_loss_thre=25, use_self_mask=True, sam2_mask_refine=False,
            verbose=False)
RUN = dict(init="mst", niter=300, schedule="linear", lr=0.01)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_scene(n=8, seed=1, objs=2, static=False, noise=0.01, W=64, H=48, strides=(1, 2, 3), gt_masks=False):
    """Scene, inference()-style output on a symmetrized sliding-window graph, and (flow_ij, flow_ji)."""
    sc = SyntheticScene(width=W, height=H, num_frames=n, seed=seed, num_objects=objs, static_camera=static)
    fw = [(i, i + k) for i in range(n) for k in strides if i + k < n]
    pairs = fw + [(j, i) for i, j in fw]
    out = sc.ideal_inference(pairs, noise_std=noise, scale=None, gt_dynamic_mask=gt_masks)
    fij = torch.tensor(np.stack([sc.flow(i, j)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    fji = torch.tensor(np.stack([sc.flow(j, i)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    return sc, out, (fij, fji)


def rot_err_deg(pred, gt):
    """Mean angle between consecutive relative rotations of the prediction and the ground truth."""
    errs = []
    for i in range(len(gt) - 1):
        a = np.linalg.inv(pred[i][:3, :3]) @ pred[i + 1][:3, :3]
        b = np.linalg.inv(gt[i][:3, :3]) @ gt[i + 1][:3, :3]
        c = (np.trace(a.T @ b) - 1) / 2
        errs.append(math.degrees(math.acos(min(1.0, max(-1.0, c)))))
    return float(np.mean(errs))


def traj_len(poses):
    return float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum())


def finite_result(scene):
    rec = scene.result()
    for field in ("poses", "intrinsics"):
        assert np.isfinite(getattr(rec, field)).all(), field
    for d in rec.depths:
        assert np.isfinite(d).all() and (np.asarray(d) > 0).all()
    return rec


# ------------------------------------------------------------------------------------------------------------
# recovery
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene1():
    return make_scene(seed=1)


@pytest.fixture(scope="module")
def glob1(scene1):
    """The global (batched) solution of scene 1 with the demo settings, shared by several tests."""
    torch.set_num_threads(1)
    sc, out, flows = scene1
    net = global_aligner(out, device="cpu", mode=GlobalAlignerMode.PointCloudOptimizer, flows=flows, **DEMO)
    loss = net.compute_global_alignment(**RUN)
    return net, loss


@pytest.mark.slow
def test_recovers_trajectory_focal_depth_and_masks(scene1, glob1):
    """Noise 1 % per pixel, random pair scales, GT flow. Bounds (measured: ATE 2 % of the path, rotation
    0.08 deg, focal 0.01 %, abs-rel 0.3 %, mask IoU 1.0 (seed 1) / 0.70-0.79 (seed 2))."""
    sc, out, flows = scene1
    net, loss = glob1
    assert math.isfinite(loss)
    rec = finite_result(net)
    assert ate(rec.poses, sc.poses) < 0.1 * traj_len(sc.poses)
    assert rot_err_deg(rec.poses, sc.poses) < 0.5
    assert rec.focals == pytest.approx(sc.focal, rel=0.01)
    gt_depth = np.stack([f.depth for f in sc.frames()])
    s = np.median(gt_depth) / np.median(rec.depths)
    assert np.mean(np.abs(s * rec.depths - gt_depth) / gt_depth) < 0.01
    gt_masks = np.stack([f.dynamic_mask for f in sc.frames()])
    iou = (gt_masks & rec.dynamic_masks).sum((1, 2)) / np.maximum((gt_masks | rec.dynamic_masks).sum((1, 2)), 1)
    assert iou.mean() > 0.6 and iou.min() > 0.4, iou
    assert rec.meta["mask_source"] == "self" and rec.meta["sam2"] == "off"


@pytest.mark.slow
def test_batched_equals_non_batched(scene1, glob1):
    """Same loss and gradient (non-batched = chunks with gradient accumulation), same optimum."""
    sc, out, flows = scene1
    nets = {}
    for mode, kw in (("batched", {}), ("chunked", dict(batchify=False, chunk_size=5))):
        net = global_aligner(out, device="cpu", flows=flows, depth_regularize_weight=0.1, **DEMO, **kw)
        net.initialize("mst")
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a generic point (not the init, where the distance gradients are round-off)
            for p in (net.pw_poses, net.im_depthmaps, net.im_poses, net.im_focals):
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        nets[mode] = net
    for epoch in (0, 300):  # flow term off / on
        grads = {}
        for mode, net in nets.items():
            net.zero_grad()
            loss, flow = net.loss_and_backward(epoch)
            grads[mode] = (float(loss), float(flow), [p.grad.clone() for p in (net.pw_poses, net.im_depthmaps,
                                                                               net.im_poses, net.im_focals)])
        (lb, fb, gb), (lc, fc, gc) = grads["batched"], grads["chunked"]
        assert lc == pytest.approx(lb, rel=1e-5) and fc == pytest.approx(fb, rel=1e-5, abs=1e-7)
        for a, b in zip(gb, gc):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6 * float(a.abs().max()) + 1e-9)
    results = {"batched": glob1[0].result()}
    net = global_aligner(out, device="cpu", flows=flows, **DEMO, batchify=False, chunk_size=7)
    net.compute_global_alignment(**RUN)
    results["chunked"] = net.result()
    a, b = (ate(results[m].poses, sc.poses) for m in ("batched", "chunked"))
    assert abs(a - b) < 0.1 * a + 1e-4
    assert results["chunked"].focals[0] == pytest.approx(results["batched"].focals[0], rel=1e-3)


@pytest.mark.slow
def test_window_wise_close_to_global(scene1, glob1):
    sc, out, flows = scene1
    glob = glob1[0]
    win = global_aligner(out, device="cpu", flows=flows, window_wise=True, window_size=6, window_overlap_ratio=0.5,
                         **DEMO)
    assert win.window_starts() == [0, 2]
    win.compute_global_alignment(**RUN)
    assert len(win.history["loss"]) == 600
    a_glob, a_win = ate(glob.result().poses, sc.poses), ate(win.result().poses, sc.poses)
    assert a_win < 2 * a_glob + 0.02 * traj_len(sc.poses)
    assert win.result().focals[0] == pytest.approx(sc.focal, rel=0.02)
    # per-frame focals also work window by window (the original only supported a shared focal)
    own = global_aligner(out, device="cpu", flows=flows, window_wise=True, window_size=4, window_overlap_ratio=0.5,
                         **{**DEMO, "shared_focal": False})
    assert own.window_starts() == [0, 2, 4]
    own.compute_global_alignment(init="mst", niter=300, schedule="linear", lr=0.01, max_iters=30)
    assert len(own.history["loss"]) == 90 and np.isfinite(own.result().focals).all()


@pytest.mark.slow
def test_window_wise_continuation_from_previous_folder(scene1, glob1, tmp_path):
    """Frames 0-5 solved and saved; a second run re-loads frames 3-5 from the folder and adds 6-7."""
    from monst3r import io
    sc, out, flows = scene1
    rec = glob1[0].result()
    folder = io.save_result(rec.subset(slice(0, 6)), tmp_path / "part0", glb=False)
    prev = io.load_prev_video_results(folder, num_frames=3)
    assert len(prev["imgs"]) == 3 and prev["depths"].shape == (3, 48, 64)
    # second video chunk: frames 3..7 renumbered 0..4 (the previous frames first, as the demo prepends them)
    keep = [3, 4, 5, 6, 7]
    fw = [(i, i + k) for i in range(5) for k in (1, 2, 3) if i + k < 5]
    pairs = fw + [(j, i) for i, j in fw]
    sub = SyntheticScene(width=64, height=48, num_frames=8, seed=1, num_objects=2)
    out2 = sub.ideal_inference([(keep[i], keep[j]) for i, j in pairs], noise_std=0.01, scale=None,
                               gt_dynamic_mask=False)
    for v in ("view1", "view2"):
        out2[v]["idx"] = [keep.index(k) for k in out2[v]["idx"]]
    fl = (torch.tensor(np.stack([sub.flow(keep[i], keep[j])[0] for i, j in pairs])).permute(0, 3, 1, 2),
          torch.tensor(np.stack([sub.flow(keep[j], keep[i])[0] for i, j in pairs])).permute(0, 3, 1, 2))
    net = global_aligner(out2, device="cpu", flows=fl, window_wise=True, window_size=5, window_overlap_ratio=0.6,
                         prev_video_results=prev, **DEMO)
    net.compute_window_wise_alignment(**RUN)
    P = net.get_im_poses().detach().numpy()
    np.testing.assert_allclose(P[:3], rec.poses[3:6], atol=1e-5)  # previous frames stay fixed
    assert net.get_focals()[0].item() == pytest.approx(rec.focals[0], rel=1e-5)
    step = np.linalg.norm(rec.poses[6, :3, 3] - rec.poses[5, :3, 3])
    assert np.abs(P[3:, :3, 3] - rec.poses[6:8, :3, 3]).max() < 0.5 * step
    net.clean_prev_results()
    assert net.result().n_frames == 2


def test_feed_forward_reconstruction():
    """Real-time mode: one-reference graph, no optimisation. Exact predictions give the exact geometry."""
    sc = SyntheticScene(width=64, height=48, num_frames=5, seed=4, num_objects=1)
    r = 2
    out = sc.ideal_inference([(r, j) for j in range(5)], noise_std=0.0, scale=0.7)
    rec = feed_forward_reconstruction(out)
    assert rec.meta["source"] == "feed_forward" and rec.meta["reference"] == r
    np.testing.assert_allclose(rec.poses[r], np.eye(4), atol=1e-6)
    assert rec.focals[0] == pytest.approx(sc.focal, rel=1e-3)
    gt_rel = np.stack([np.linalg.inv(sc.poses[r]) @ p for p in sc.poses])
    np.testing.assert_allclose(rec.poses[:, :3, :3], gt_rel[:, :3, :3], atol=2e-3)
    np.testing.assert_allclose(rec.poses[:, :3, 3], 0.7 * gt_rel[:, :3, 3], atol=2e-3)
    gt_depth = np.stack([f.depth for f in sc.frames()])
    np.testing.assert_allclose(rec.depths, 0.7 * gt_depth, rtol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# presets, user masks, options
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shared,optimize_pp", [(True, False), (False, False), (False, True)])
def test_preset_intrinsics_stay_fixed(scene1, shared, optimize_pp):
    sc, out, flows = scene1
    net = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "shared_focal": shared},
                         optimize_pp=optimize_pp)
    K = sc.K.copy()
    K[0, 2] += 1.5 if optimize_pp else 0  # a principal point off the image centre (kept only with optimize_pp)
    net.preset_intrinsics([torch.tensor(K, dtype=torch.float32)] * sc.num_frames)
    before = net.get_intrinsics().detach().clone()
    net.compute_global_alignment(init="mst", niter=300, schedule="linear", lr=0.01, max_iters=40)
    after = net.get_intrinsics().detach()
    torch.testing.assert_close(after, before)
    assert after[0, 0, 0].item() == pytest.approx(sc.focal, rel=1e-5)
    if optimize_pp:
        assert after[0, 0, 2].item() == pytest.approx(K[0, 2], abs=1e-4)


def test_known_poses_with_preset_focal(scene1):
    sc, out, _ = scene1
    out = dict(out)
    out["view1"] = dict(out["view1"], camera_pose=torch.tensor(sc.poses[out["view1"]["idx"]]).float())
    out["view2"] = dict(out["view2"], camera_pose=torch.tensor(sc.poses[out["view2"]["idx"]]).float())
    net = global_aligner(out, device="cpu", shared_focal=True, verbose=False)
    net.preset_focal([sc.focal])
    net.compute_global_alignment(init="known_poses", niter=300, schedule="linear", lr=0.01, max_iters=100)
    rec = finite_result(net)
    assert rec.focals[0] == pytest.approx(sc.focal, rel=1e-5)
    assert ate(rec.poses, sc.poses) < 0.1 * traj_len(sc.poses)


def test_user_masks_replace_self_masks(scene1):
    sc, out, flows = scene1
    masks = np.zeros((sc.num_frames, 48, 64), bool)
    masks[:, 10:20, 10:30] = True
    net = global_aligner(out, device="cpu", flows=flows, dynamic_masks=masks, **DEMO)
    np.testing.assert_array_equal(torch.stack(net.dynamic_masks).numpy(), masks)
    assert net.result().meta["mask_source"] == "user"


def test_sam2_missing_is_skipped_with_status(scene1, monkeypatch):
    """sam2_mask_refine=True without SAM2 (package or checkpoint): a warning, and the result says so."""
    sc, out, flows = scene1
    net = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "sam2_mask_refine": True},
                         sam2_checkpoint="/nonexistent/sam2.pt")
    assert net.sam2_status.startswith("skipped")
    assert net.result().meta["sam2"].startswith("skipped")


def test_flow_loss_mse_and_validity_options(scene1):
    sc, out, flows = scene1
    valid = torch.ones(flows[0].shape[0], 1, 48, 64, dtype=torch.bool)
    net = global_aligner(out, device="cpu", flows=(*flows, valid, valid), flow_loss_fn="mse",
                         flow_use_validity=True, **DEMO)
    net.compute_global_alignment(init="mst", niter=300, schedule="linear", lr=0.01, max_iters=60)
    assert all(math.isfinite(v) for v in net.history["loss"]) and net.history["flow"][-1] > 0


# ------------------------------------------------------------------------------------------------------------
# degenerate inputs: no NaN, no crash
# ------------------------------------------------------------------------------------------------------------
def _run_short(net, iters=60, init="mst"):
    loss = net.compute_global_alignment(init=init, niter=300, schedule="linear", lr=0.01, max_iters=iters)
    assert math.isfinite(loss)
    assert all(math.isfinite(v) for v in net.history["loss"])
    return finite_result(net)


def test_static_camera():
    sc, out, flows = make_scene(seed=5, static=True)
    _run_short(global_aligner(out, device="cpu", flows=flows, **DEMO))


def test_entirely_dynamic_scene(scene1):
    sc, out, flows = scene1
    masks = np.ones((sc.num_frames, 48, 64), bool)  # every pixel moving: the flow term has nothing to compare
    net = global_aligner(out, device="cpu", flows=flows, dynamic_masks=masks, **DEMO)
    _run_short(net)
    assert max(net.history["flow"]) == 0


def test_two_frames_optimizer_and_pairviewer():
    sc, out, flows = make_scene(n=2, strides=(1,))
    rec = _run_short(global_aligner(out, device="cpu", flows=flows, **DEMO))
    assert rec.n_frames == 2
    pv = global_aligner(out, device="cpu", mode=GlobalAlignerMode.PairViewer, verbose=False)
    assert np.isfinite(pv.result().poses).all()


def test_frames_of_different_sizes(scene1):
    """Frames 0-3 cropped to 56 columns: the batched optimizer pads; the flow term is disabled (warning)."""
    sc, out, flows = scene1
    crop = {0, 1, 2, 3}

    def cut(x, k, cols_dim):
        return x.narrow(cols_dim, 0, 56) if k in crop else x
    out2 = {"view1": {}, "view2": {}, "pred1": {}, "pred2": {}}
    for v, p, key in (("view1", "pred1", "pts3d"), ("view2", "pred2", "pts3d_in_other_view")):
        idx = out[v]["idx"]
        out2[v] = dict(idx=idx, instance=out[v]["instance"],
                       img=[cut(out[v]["img"][e], k, 2) for e, k in enumerate(idx)],
                       dynamic_mask=[cut(out[v]["dynamic_mask"][e], k, 1) for e, k in enumerate(idx)])
        out2[p] = {key: [cut(out[p][key][e], k, 1) for e, k in enumerate(idx)],
                   "conf": [cut(out[p]["conf"][e], k, 1) for e, k in enumerate(idx)]}
    net = global_aligner(out2, device="cpu", **{**DEMO, "flow_loss_weight": 0.01})
    assert net.flow_loss_weight == 0 and not net.same_size
    rec = _run_short(net)
    assert isinstance(rec.depths, list) and rec.depths[0].shape == (48, 56) and rec.depths[5].shape == (48, 64)
    nb = global_aligner(out2, device="cpu", **{**DEMO, "flow_loss_weight": 0.0}, batchify=False)
    _run_short(nb, iters=20)


def test_all_confidences_below_threshold(scene1):
    sc, out, flows = scene1
    out = dict(out, pred1=dict(out["pred1"], conf=torch.full_like(out["pred1"]["conf"], 2.0)),
               pred2=dict(out["pred2"], conf=torch.full_like(out["pred2"]["conf"], 2.0)))
    net = global_aligner(out, device="cpu", flows=flows, **DEMO)
    rec = _run_short(net)
    assert not any(m.any() for m in net.get_masks())
    assert rec.n_frames == sc.num_frames


def test_flow_network_wiring_each_pair_once(scene1):
    """Without injected flows the optimizer calls the flow network (optical_flow.compute_pair_flows) once per unordered
    pair and direction, and mirrors the result onto the reverse edges."""
    sc, out, _ = scene1

    class StubFlow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, a, b, iters=20, test_mode=True):  # antisymmetric: f(a, b) = -f(b, a)
            self.calls += a.shape[0]
            return None, ((b - a) / 255).mean(1, keepdim=True).repeat(1, 2, 1, 1)
    stub = StubFlow()
    net = global_aligner(out, device="cpu", flow_model=stub, **DEMO)
    E = net.n_edges
    assert stub.calls == E  # E/2 unordered pairs x 2 directions (the original computes 2E)
    rev = [net.edges.index((j, i)) for i, j in net.edges]
    torch.testing.assert_close(net.flow_ij[rev], net.flow_ji)
    torch.testing.assert_close(net.flow_ij, -net.flow_ji)
    assert net.flow_valid_mask_i.shape == (E, 1, 48, 64) and net.flow_valid_mask_i.dtype == torch.bool


def test_flows_and_masks_step_runs_before_the_optimizer(scene1, monkeypatch):
    """global_aligner runs the flows-and-masks step on the parsed output and hands its result to the optimizer,
    which then builds no network and runs no step; a PointCloudOptimizer constructed directly runs the same step
    itself and ends in the same state (flows, self masks, parameters after a short run)."""
    import monst3r.cloud_opt.optimizer as optimizer_module
    from monst3r.cloud_opt import PointCloudOptimizer
    sc, out, flows = scene1
    direct = PointCloudOptimizer(out["view1"], out["view2"], out["pred1"], out["pred2"], flows=flows, **DEMO)

    def no_step(*a, **k):
        raise AssertionError("the optimizer ran the flows-and-masks step although it was given its result")
    monkeypatch.setattr(optimizer_module, "prepare_flows_and_masks", no_step)
    torch.manual_seed(0)
    net = global_aligner(out, device="cpu", flows=flows, **DEMO)
    monkeypatch.undo()
    assert net.mask_source == "self" and set(net.timings) == {"flows", "self_masks"}
    torch.testing.assert_close(net.flow_ij, direct.flow_ij, rtol=0, atol=0)
    torch.testing.assert_close(net.flow_ji, direct.flow_ji, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(net.dynamic_masks, direct.dynamic_masks))
    torch.manual_seed(0)
    direct = PointCloudOptimizer(out["view1"], out["view2"], out["pred1"], out["pred2"], flows=flows, **DEMO)
    for scene in (net, direct):
        torch.manual_seed(1)
        scene.compute_global_alignment(init="mst", niter=20, schedule="linear", lr=0.01)
    torch.testing.assert_close(net.get_im_poses(), direct.get_im_poses(), rtol=0, atol=0)
    torch.testing.assert_close(net.get_depthmaps(raw=True), direct.get_depthmaps(raw=True), rtol=0, atol=0)


@pytest.mark.slow
def test_flow_loss_with_ground_truth_flow_lowers_pose_error():
    """Issue 5: with exact flow, the flow loss lowers the trajectory error compared with no flow loss, on most scenes.

    Measured (noise 0.03, 8 frames 64x48, ATE / trajectory length, no flow -> flow 0.01, 2 threads, OpenCV 5.1):
    seed 1 0.039 -> 0.036, 2 0.058 -> 0.055, 3 0.063 -> 0.101, 4 0.052 -> 0.049, 5 0.025 -> 0.021,
    6 0.032 -> 0.028. Seed 3 is a scene where the run with the flow loss ends in a worse minimum, and its numbers
    move with the thread count and the OpenCV version (the PnP of the initialisation): an earlier environment gave
    0.110 -> 0.087 there. The claim tested is therefore "on at least 5 of 6 scenes", not on every one."""
    errs = {0.0: [], 0.01: []}
    for seed in range(1, 7):
        sc, out, flows = make_scene(seed=seed, noise=0.03)
        for w in errs:
            net = global_aligner(out, device="cpu", flows=flows, **{**DEMO, "flow_loss_weight": w})
            net.compute_global_alignment(**RUN)
            errs[w].append(ate(net.result().poses, sc.poses) / traj_len(sc.poses))
    assert sum(a < b for a, b in zip(errs[0.01], errs[0.0])) >= 5, errs
