"""Single-frame depth (``--mode=eval_depth``) on synthetic NYU-v2 and Sintel layouts."""
import math

import numpy as np
import pytest

from monst3r.errors import Monst3rInputError
from monst3r.datasets.synthetic import SyntheticScene
from monst3r.eval import depth
from monst3r.eval.depth import depth_file_names
from synthetic_fixtures import IdealPairModel, write_sintel_fixture
from test_eval_pose import parse_launch_args, tiny_model

ARGS = ["--eval_image_size", "64", "--device", "cpu", "--silent"]


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("nyu")
    images, depths = root / "data/nyu-v2/val/nyu_images", root / "data/nyu-v2/val/nyu_depths"
    images.mkdir(parents=True)
    depths.mkdir(parents=True)
    scene = SyntheticScene(width=64, height=48, num_frames=3, seed=21)
    index = {}
    for k in range(3):
        f = scene.frame(k)
        path = images / f"{k:05d}.png"
        Image.fromarray(f.rgb).save(path)
        np.save(depths / f"{k:05d}.npy", f.depth)
        index[str(path)] = (scene, k)
    return root, index


def test_nyu_ideal_network_is_exact_up_to_scale(nyu_root, tmp_path, capsys):
    root, index = nyu_root
    args = parse_launch_args(["--mode=eval_depth", "--eval_dataset=nyu", f"--output_dir={tmp_path}",
                              f"--eval_data_root={root}", "--no_crop", *ARGS])
    out = depth.main(args, model=IdealPairModel(index))
    assert out["n_images"] == 3
    pred = np.load(tmp_path / "00000depth.npy")
    assert pred.dtype == np.float32 and pred.shape == (48, 64)
    assert (tmp_path / "00000depth.png").is_file()
    avg = out["metrics"].average
    assert avg["Abs Rel"] < 1e-5 and avg["δ < 1.25"] == 1.0, avg
    printed = capsys.readouterr().out
    assert "average (pixel-weighted)" in printed and "3 images evaluated" in printed


def test_tiny_model_gives_finite_depth_metrics(nyu_root, tmp_path, golden):
    root, _ = nyu_root
    args = parse_launch_args(["--mode=eval_depth", "--eval_dataset=nyu", f"--output_dir={tmp_path}",
                              f"--eval_data_root={root}", *ARGS])
    out = depth.main(args, model=tiny_model(golden))
    assert all(math.isfinite(v) for v in out["metrics"].average.values())


def test_sintel_writes_per_sequence_folders_and_bad_datasets_are_clear(tmp_path):
    root = tmp_path / "root"
    index = write_sintel_fixture(root, {"alley_2": dict(width=64, height=48, num_frames=2, seed=1)}, depth=False,
                                 masks=False)
    args = parse_launch_args(["--mode=eval_depth", "--eval_dataset=sintel", f"--output_dir={tmp_path / 'out'}",
                              f"--eval_data_root={root}", "--seq_list", "alley_2", *ARGS])
    out = depth.main(args, model=IdealPairModel(index))
    assert out["metrics"] is None and out["n_images"] == 2
    assert sorted(p.name for p in (tmp_path / "out/alley_2").glob("*.npy")) == ["frame_0001depth.npy",
                                                                                 "frame_0002depth.npy"]
    assert depth_file_names("a/frame_0001.jpg") == ("frame_0001.jpg.npy", "frame_0001depth.png")
    for name in ("davis", "tum"):
        args.eval_dataset = name
        with pytest.raises(Monst3rInputError, match="no protocol"):
            depth.main(args, model=IdealPairModel(index))
    args.eval_dataset = "kitti"
    with pytest.raises(Monst3rInputError, match="download_kitti.sh"):
        depth.main(args, model=IdealPairModel(index))
