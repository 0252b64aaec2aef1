"""demo.py end to end on CPU (tiny golden network, synthetic frames) and its one-line errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from monst3r.datasets.synthetic import SceneConfig, SyntheticScene
    import PIL.Image

    out = tmp_path_factory.mktemp("frames")
    scene = SyntheticScene(SceneConfig(width=128, height=96, num_frames=5, seed=1))
    for i, f in enumerate(scene.frames()):
        PIL.Image.fromarray(f.rgb).save(out / f"{i:05d}.png")
    return out


def _demo(*args, env=None):
    e = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=600, cwd=ROOT)


def test_demo_writes_the_original_result_folder(frames, tmp_path, golden):
    weights = golden("model", "tiny_linear", "tiny_linear.pth")
    r = _demo("--input", frames, "--output_dir", tmp_path, "--seq_name", "seq", "--weights", weights,
              "--image_size", "224", "--niter", "5", "--flow_loss_weight", "0", "--device", "cpu", "--silent",
              "--export", "ply,colmap")
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "seq"
    assert "done: 5 frames" in r.stdout and str(out) in r.stdout
    names = {p.name for p in out.iterdir()}
    for k in range(5):
        assert {f"frame_{k:04d}.npy", f"frame_{k:04d}.png", f"conf_{k}.npy", f"init_conf_{k}.npy",
                f"dynamic_mask_{k}.png", f"enlarged_dynamic_mask_{k}.png"} <= names
    assert {"pred_traj.txt", "pred_intrinsics.txt", "scene.glb", "colmap", "ply"} <= names
    traj = np.loadtxt(out / "pred_traj.txt")
    assert traj.shape == (5, 8) and np.isfinite(traj).all()
    assert np.load(out / "frame_0000.npy").shape == (224, 224)
    from monst3r.io import load_result

    res = load_result(out)
    assert res.n_frames == 5 and res.depths.shape == (5, 224, 224)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary leftovers


def test_demo_real_time(frames, tmp_path, golden):
    weights = golden("model", "tiny_linear", "tiny_linear.pth")
    r = _demo("--input", frames, "--output_dir", tmp_path, "--seq_name", "rt", "--weights", weights,
              "--image_size", "224", "--real_time", "--device", "cpu", "--silent")
    assert r.returncode == 0, r.stderr[-3000:]
    a = np.load(tmp_path / "rt" / "pts3d2_p4.npy")
    assert a.shape == (224, 224, 6) and (tmp_path / "rt" / "conf1_p0.npy").exists()


@pytest.mark.parametrize("args, needle", [
    (["--input", "/nonexistent/frames"], "does not exist"),
    (["--device", "cuda:7"], "no CUDA GPU" if not __import__("torch").cuda.is_available() else "GPU(s) visible"),
    (["--weights", "/nonexistent/w.pth"], "does not exist"),
    (["--scenegraph_type", "oneref", "--refid", "99"], "out of range"),
])
def test_demo_one_line_errors(frames, tmp_path, golden, args, needle):
    base = ["--input", frames, "--output_dir", tmp_path, "--weights", golden("model", "tiny_linear", "tiny_linear.pth"),
            "--image_size", "224", "--niter", "2", "--device", "cpu", "--silent"]
    r = _demo(*(base + args))
    assert r.returncode == 2
    err = [line for line in r.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and needle in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*/pred_traj.txt"))


def test_demo_missing_flow_weights(frames, tmp_path, golden):
    r = _demo("--input", frames, "--output_dir", tmp_path, "--weights", golden("model", "tiny_linear", "tiny_linear.pth"),
              "--image_size", "224", "--niter", "2", "--device", "cpu", "--silent",
              "--flow_weights", tmp_path / "missing-flow.pth")
    assert r.returncode == 2 and "download_ckpt.sh" in r.stderr and "--flow_loss_weight 0" in r.stderr


def test_demo_offline_hub_says_how_to_pass_weights(frames, tmp_path):
    r = _demo("--input", frames, "--output_dir", tmp_path, "--weights", "checkpoints/none.pth", "--device", "cpu")
    assert r.returncode == 2 and "--weights" in r.stderr


def test_demo_without_input_or_gradio():
    pytest.importorskip("torch")
    try:
        import gradio  # noqa: F401
        pytest.skip("gradio installed: the GUI would start")
    except ImportError:
        pass
    r = _demo()
    assert r.returncode == 2 and "--input" in r.stderr
