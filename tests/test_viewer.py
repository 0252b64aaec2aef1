"""The 4D viewer's point extraction and scene building (no browser needed)."""
import numpy as np
import pytest

from monst3r.result import Reconstruction
from monst3r.viewer import build_scene, frame_points, recentered_poses


@pytest.fixture(scope="module")
def recon():
    from monst3r.datasets.synthetic import SyntheticScene

    scene = SyntheticScene(width=64, height=48, num_frames=4, seed=3)
    frames = scene.frames()
    return Reconstruction(
        poses=np.stack([f.pose for f in frames]), intrinsics=np.stack([f.intrinsics for f in frames]),
        depths=np.stack([f.depth for f in frames]), confs=np.full((4, 48, 64), 3.0, np.float32),
        init_confs=np.full((4, 48, 64), 3.0, np.float32), dynamic_masks=np.stack([f.dynamic_mask for f in frames]),
        rgb=np.stack([f.rgb for f in frames]).astype(np.float32) / 255), scene


def test_points_are_the_world_geometry(recon):
    res, scene = recon
    poses = recentered_poses(res.poses, recenter=False)
    pts = frame_points(res, 1, poses, conf_thre=0.1, fg_conf_thre=0.0)
    world = scene.world_points(1).reshape(-1, 3)
    mask = res.dynamic_masks[1].reshape(-1)
    assert len(pts.dyn_xyz) == mask.sum() and len(pts.static_xyz) == (~mask).sum()
    np.testing.assert_allclose(pts.static_xyz, world[~mask], atol=1e-3)
    np.testing.assert_allclose(pts.dyn_xyz, world[mask], atol=1e-3)


def test_thresholds_and_no_mask(recon):
    res, _ = recon
    poses = recentered_poses(res.poses)
    none = frame_points(res, 0, poses, conf_thre=np.log(3.0) + 0.01, fg_conf_thre=np.log(3.0) + 0.01)
    assert len(none.dyn_xyz) == 0 and len(none.static_xyz) == 0
    allpix = frame_points(res, 0, poses, no_mask=True)
    assert len(allpix.dyn_xyz) == 48 * 64 and len(allpix.static_xyz) == 0
    np.testing.assert_allclose(poses[len(poses) // 2], np.eye(4), atol=1e-9)


def test_scene_builds_on_a_local_server(recon):
    viser = pytest.importorskip("viser")
    from monst3r.viewer import add_playback_gui

    res, _ = recon
    server = viser.ViserServer(host="127.0.0.1", port=18000 + np.random.randint(0, 2000), verbose=False)
    try:
        nodes, bg = build_scene(server, res)
        step, timestep = add_playback_gui(server, nodes)
        assert len(nodes) == 4
        assert [n.visible for n in nodes] == [True, False, False, False]
        step()
        assert int(timestep.value) == 1 and [n.visible for n in nodes] == [False, True, False, False]
    finally:
        server.stop()


# ------------------------------------------------------------------------ scenes of any scale, non-finite points
F16_MAX = 65504.0


def _scaled(res, factor, depth_edit=None):
    """``res`` with every coordinate multiplied by ``factor`` (depths and camera positions)."""
    poses = res.poses.astype(np.float64).copy()
    poses[:, :3, 3] *= factor
    depths = res.depths.astype(np.float64) * factor
    if depth_edit is not None:
        depth_edit(depths)
    return Reconstruction(poses=poses, intrinsics=res.intrinsics, depths=depths, confs=res.confs,
                          init_confs=res.init_confs, dynamic_masks=res.dynamic_masks, rgb=res.rgb)


def _sent(res, **kw):
    """Build the scene on a real viser server and return what it holds: ``(clouds, camera positions, scale)``,
    clouds as the arrays viser stores (and sends) per point-cloud node."""
    viser = pytest.importorskip("viser")
    server = viser.ViserServer(host="127.0.0.1", port=18000 + np.random.randint(0, 2000), verbose=False)
    clouds, cams = {}, []
    add_pc, add_cam = server.scene.add_point_cloud, server.scene.add_camera_frustum

    def rec_pc(name, **k):
        h = add_pc(name, **k)
        clouds[name] = h
        return h

    def rec_cam(name, **k):
        h = add_cam(name, **k)
        cams.append(np.asarray(h.position, np.float64))
        return h

    server.scene.add_point_cloud, server.scene.add_camera_frustum = rec_pc, rec_cam
    try:
        build_scene(server, res, **kw)
        return {k: np.asarray(h.points) for k, h in clouds.items()}, np.stack(cams), server.monst3r_scene_scale
    finally:
        server.stop()


def test_ordinary_scene_is_sent_unscaled_in_float32(recon):
    res, _ = recon
    clouds, cams, s = _sent(res)
    assert s == 1.0
    assert all(c.dtype == np.float32 for c in clouds.values())
    ref = recentered_poses(res.poses)
    np.testing.assert_allclose(cams, ref[:, :3, 3], atol=1e-6)
    pts = frame_points(res, 2, ref)
    np.testing.assert_array_equal(clouds["/frames/t2/points"], pts.dyn_xyz)


@pytest.mark.parametrize("factor", [1e6, 1e-6])
def test_scene_of_any_scale_is_normalised_points_and_cameras_alike(recon, factor):
    """Coordinates ~1e6 overflowed viser's default float16 clouds (a blank view); now one global factor divides
    points and cameras, so the shown scene is the ordinary one, finite and well inside the float16 range."""
    res, _ = recon
    clouds0, cams0, _ = _sent(res)
    clouds, cams, s = _sent(_scaled(res, factor))
    r = s / factor  # the scene's typical size (a few units here), rounded to a power of ten
    assert 0.1 <= r <= 100 and np.log10(s) == pytest.approx(round(np.log10(s)))
    assert set(clouds) == set(clouds0) and sum(len(c) for c in clouds.values()) > 1000
    for name, c in clouds.items():
        assert c.dtype == np.float32 and np.isfinite(c).all() and np.abs(c).max() < F16_MAX, name
        np.testing.assert_allclose(c * r, clouds0[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cams * r, cams0, rtol=1e-5, atol=1e-6)  # float32 poses


def test_scene_scale_can_be_forced(recon):
    res, _ = recon
    big = _scaled(res, 1e6)
    clouds, cams, s = _sent(big, scale=1.0)  # result units, as asked: float32 keeps them finite
    assert s == 1.0 and all(np.isfinite(c).all() for c in clouds.values())
    assert max(np.abs(c).max() for c in clouds.values()) > F16_MAX
    from monst3r.errors import Monst3rInputError
    from monst3r.viewer import scene_scale

    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(Monst3rInputError, match="scene_scale"):
            scene_scale(res, recentered_poses(res.poses), bad)


def test_nonfinite_points_are_dropped_with_one_warning(recon, caplog):
    res, _ = recon

    def damage(d):
        d[0, :2, :] = np.nan  # 2 rows of frame 0
        d[3, 5, 7] = np.inf  # one pixel of frame 3

    bad = _scaled(res, 1.0, damage)
    with caplog.at_level("WARNING", logger="monst3r.viewer"):
        clouds, cams, s = _sent(bad, no_mask=True)
    lines = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert lines == [f"warning: dropped {2 * 64 + 1} points with non-finite coordinates in 2 of 4 frames"]
    assert all(np.isfinite(c).all() for c in clouds.values())
    assert len(clouds["/frames/t0/points"]) == 48 * 64 - 128 and len(clouds["/frames/t3/points"]) == 48 * 64 - 1
    assert np.isfinite(cams).all() and s == 1.0


def test_check_result_rejects_undrawable_results(recon):
    from monst3r.errors import Monst3rInputError
    from monst3r.viewer import check_result

    res, _ = recon
    check_result(res)
    nan_pose = res.copy()
    nan_pose.poses[2, 0, 3] = np.nan
    with pytest.raises(Monst3rInputError, match="non-finite poses at frames 2"):
        check_result(nan_pose)
    squashed = res.copy()
    squashed.poses[1, :3, :3] = 0
    with pytest.raises(Monst3rInputError, match="invalid rotations .* frames 1"):
        check_result(squashed)
    bad_k = res.copy()
    bad_k.intrinsics[3, 0, 0] = 0
    with pytest.raises(Monst3rInputError, match="invalid intrinsics .* frames 3"):
        check_result(bad_k)


def test_realtime_frames_of_any_scale_and_nonfinite_points(tmp_path, caplog):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "visualizer_monst3r_realtime", Path(__file__).resolve().parents[1] / "viser" / "visualizer_monst3r_realtime.py")
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(2, 6, 8, 3))  # typical distance from the centre ~1.5 (x 1e6 below)
    for b in range(2):
        a = np.concatenate([xyz[b] * 1e6 + 5e6, rng.random((6, 8, 3))], -1).astype(np.float64)
        if b == 1:
            a[0, :3, 0] = np.nan
        np.save(tmp_path / f"pts3d2_p{b}.npy", a)
    with caplog.at_level("INFO", logger="monst3r.viewer"):
        frames, s = rt.load_frames(tmp_path)
    assert s == 1e6
    assert [len(f[0]) for f in frames] == [48, 45]
    for pts, rgb in frames:
        assert pts.dtype == np.float32 and np.isfinite(pts).all() and np.abs(pts).max() < F16_MAX
        assert rgb.dtype == np.uint8 and len(rgb) == len(pts)
    good = np.concatenate([xyz[0].reshape(-1, 3), xyz[1].reshape(-1, 3)[3:]])
    np.testing.assert_allclose(frames[0][0], xyz[0].reshape(-1, 3) - good.mean(0), atol=1e-5)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "warning: dropped 3 points with non-finite coordinates in 1 of 2 frames"]
