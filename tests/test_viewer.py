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
