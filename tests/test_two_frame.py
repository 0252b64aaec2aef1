"""The two-frame demo's motion mask files (monst3r.two_frame; spec optimizer.md 7.2)."""
import numpy as np
import torch

from monst3r.datasets.synthetic import SyntheticScene
from monst3r.result import Reconstruction
from monst3r.two_frame import FILES, two_frame_motion_mask, write_two_frame_outputs


class GTFlow(torch.nn.Module):
    """Stands in for RAFT: returns the synthetic scene's exact flow for (frame a, frame b) inputs."""

    def __init__(self, scene, a, b):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.fwd = torch.from_numpy(scene.flow(a, b)[0]).permute(2, 0, 1)
        self.bwd = torch.from_numpy(scene.flow(b, a)[0]).permute(2, 0, 1)
        self.calls = []

    def forward(self, img1, img2, iters=20, test_mode=True):
        self.calls.append((img1.shape, iters, float(img1.max())))
        return None, torch.stack([self.fwd, self.bwd])


def _scene_result(sc, a, b):
    frames = [sc.frame(a), sc.frame(b)]
    return Reconstruction(poses=np.stack([f.pose for f in frames]), intrinsics=np.stack([f.intrinsics for f in frames]),
                          depths=np.stack([f.depth for f in frames]), confs=np.ones((2, sc.height, sc.width)),
                          init_confs=np.ones((2, sc.height, sc.width)),
                          dynamic_masks=np.zeros((2, sc.height, sc.width), bool),
                          rgb=np.stack([f.rgb / 255.0 for f in frames])), frames


def test_ego_motion_explains_the_static_pixels_and_the_mask_finds_the_movers(tmp_path):
    sc = SyntheticScene(width=96, height=64, num_frames=4, seed=1, num_objects=2)
    rec, frames = _scene_result(sc, 0, 2)
    net = GTFlow(sc, 0, 2)
    out = two_frame_motion_mask(rec, net)
    assert net.calls == [((2, 3, 64, 96), 20, net.calls[0][2])] and net.calls[0][2] > 1  # one call, 0..255 input
    for k, (src, dst) in enumerate(((0, 2), (2, 0))):
        suffix = "" if k == 0 else "_bw"
        valid = sc.flow(src, dst)[1] & ~sc.frame(src).dynamic_mask
        assert np.percentile(out["error" + suffix][valid], 99) < 1e-2  # rigid flow = GT flow off the movers
        moving = sc.frame(src).dynamic_mask & sc.flow(src, dst)[1]
        assert out["error" + suffix][moving].mean() > 1.0
        binary = out["binary" + suffix]
        assert binary.dtype == bool and not binary[valid].any()
        inter = (binary & moving).sum()
        assert inter / max(binary.sum(), 1) > 0.9  # flagged pixels are moving pixels
        norm = out["normalized" + suffix]
        assert norm.min() == 0 and abs(norm.max() - 1) < 1e-6
        np.testing.assert_array_equal(binary, norm > 0.35)
    np.testing.assert_allclose(out["flow"], sc.flow(0, 2)[0])
    paths = write_two_frame_outputs(out, tmp_path)
    assert sorted(p.name for p in paths) == sorted(FILES)
    import cv2
    b = cv2.imread(str(tmp_path / "dynamic_mask_binary.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(b > 127, out["binary"])
    assert cv2.imread(str(tmp_path / "dynamic_mask.png")).shape == (64, 96, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "backward_flow.npy"), out["flow_bw"])
    assert cv2.imread(str(tmp_path / "forward_flow.png")).shape == (64, 96, 3)


def test_pipeline_writes_the_files_in_the_folder_it_is_given(tmp_path):
    """The demo gives the result folder (the original wrote into the output root: deliberate difference)."""
    from monst3r.pipeline import two_frame_extras

    sc = SyntheticScene(width=64, height=48, num_frames=2, seed=2)
    rec, _ = _scene_result(sc, 0, 1)
    two_frame_extras(rec, tmp_path, torch.device("cpu"), flow_model=GTFlow(sc, 0, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
