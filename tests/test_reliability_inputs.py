"""Reliability: whatever a user can type or point at gives one clear error (never a traceback), and nothing is
silently ignored or silently wrong. Library calls raise Monst3rInputError with a message that says what to do;
command lines print exactly one ``error:`` line on stderr and exit with 2 (1 when every evaluated sequence
failed). Every bad file is built tiny in tmp_path."""
import argparse
import io
import logging
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from monst3r.errors import Monst3rInputError
from monst3r.model import CheckpointError, load_model
from monst3r.utils.image import load_images
from monst3r.utils.parsing import SafeParseError, parse_criterion
from pickle_payload import PicklePayload

REPO = Path(__file__).resolve().parents[1]
TINY = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(64, 64), head_type='linear', output_mode='pts3d', "
        "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=32, enc_depth=1, "
        "enc_num_heads=2, dec_embed_dim=32, dec_depth=1, dec_num_heads=2)")
HINT = "official .pth"


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# ============================================================================ checkpoints (--weights)
def _png_bytes(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", size, (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes/readme.txt", "not a checkpoint")
    return buf.getvalue()


@pytest.mark.parametrize("name,data,what", [
    ("notes.txt", b"hello world\n", "text file"),
    ("empty.pth", b"", "empty file"),
    ("photo.pth", None, "PNG image"),
    ("archive.pth", "zip", "zip archive"),
    ("model.pth", b"\x89HDF\r\n\x1a\n" + bytes(range(200)), "not a PyTorch checkpoint"),
])
def test_weights_that_are_not_checkpoints(tmp_path, name, data, what):
    data = _png_bytes() if data is None else _zip_bytes() if data == "zip" else data
    (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError, match="is not a MonST3R checkpoint") as exc:
        load_model(tmp_path / name)
    assert what in str(exc.value) and HINT in str(exc.value)


@pytest.mark.parametrize("obj,expect", [
    ({"foo": 1}, "expected a dict with 'args' and 'model'"),
    ([1, 2, 3], "found a list"),
    ({"conv.weight": torch.zeros(3, 3)}, "expected a dict with 'args' and 'model'"),   # bare state dict
    ({"model": 5, "args": argparse.Namespace(model=TINY)}, "not a state dict"),
    ({"model": {"w": [1, 2]}, "args": argparse.Namespace(model=TINY)}, "not tensors"),
    ({"model": {"conv.weight": torch.zeros(3)}, "args": argparse.Namespace(model=TINY)}, "none of its 1 weights"),
    ({"model": {}, "args": 5}, "no 'args.model' constructor string"),
])
def test_pth_with_wrong_structure(tmp_path, obj, expect):
    torch.save(obj, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match="not a MonST3R checkpoint") as exc:
        load_model(tmp_path / "ckpt.pth")
    assert expect in str(exc.value) and HINT in str(exc.value)


@pytest.mark.parametrize("field,value", [
    ("enc_embed_dim", "1_000_000"), ("img_size", "(100000, 100000)"), ("enc_depth", "100000"),
    ("enc_embed_dim", "-5"), ("enc_embed_dim", "32.5"), ("enc_embed_dim", "33"),
])
def test_model_string_with_absurd_sizes_is_refused_before_allocating(tmp_path, field, value):
    s = TINY.replace("enc_embed_dim=32", "enc_embed_dim=32" if field != "enc_embed_dim" else f"{field}={value}")
    if field != "enc_embed_dim":
        s = s.replace("dec_num_heads=2)", f"dec_num_heads=2, {field}={value})") if field != "img_size" else \
            s.replace("img_size=(64, 64)", f"img_size={value}")
        if field == "enc_depth":
            s = s.replace("enc_depth=1, ", "")
    torch.save({"model": {}, "args": argparse.Namespace(model=s)}, tmp_path / "big.pth")
    with pytest.raises(CheckpointError, match="invalid model configuration") as exc:
        load_model(tmp_path / "big.pth")
    assert field in str(exc.value)


def test_parameter_count_bound():
    from monst3r.model import model_from_string

    s = TINY.replace("enc_embed_dim=32", "enc_embed_dim=16384").replace("enc_depth=1", "enc_depth=256") \
        .replace("enc_num_heads=2", "enc_num_heads=16")
    with pytest.raises(CheckpointError, match="billion parameters"):
        model_from_string(s)


def test_hf_folder_with_broken_config(golden, tmp_path):
    import shutil

    for text, expect in (("{not json", "cannot read config.json"), ("[1, 2]", "holds a list"),
                         ('{"enc_embed_dim": "big", "pos_embed": "RoPE100"}', "enc_embed_dim='big'"),
                         ('{"pos_embed": "RoPE100", "enc_embed_dim": 1000000}', "enc_embed_dim=1000000")):
        folder = tmp_path / f"hf{len(expect)}"
        shutil.copytree(golden("model", "tiny_linear", "hf"), folder)
        (folder / "config.json").write_text(text)
        with pytest.raises(CheckpointError, match="MonST3R model folder|invalid model configuration") as exc:
            load_model(folder)
        assert expect in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a MonST3R model folder: it has no config.json"):
        load_model(tmp_path / "empty")


def test_legacy_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": {}, "args": PicklePayload(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="refusing|not a MonST3R checkpoint"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_flow_checkpoints(tmp_path):
    from third_party.raft.loader import load_flow_model

    (tmp_path / "t.pth").write_text("hello")
    (tmp_path / "e.pth").write_bytes(b"")
    (tmp_path / "x.safetensors").write_bytes(b"abc")
    torch.save({"update_block.refine.0.gamma": torch.zeros(3)}, tmp_path / "partial.pth")
    torch.save({"a": 1}, tmp_path / "nt.pth")
    marker = tmp_path / "pwned"
    torch.save({"x": PicklePayload(marker)}, tmp_path / "evil.pth")
    for name, expect in (("t.pth", "text file"), ("e.pth", "empty file"), ("x.safetensors", "safetensors"),
                         ("partial.pth", "does not match the network"), ("nt.pth", "does not hold a state dict"),
                         ("evil.pth", "refusing")):
        with pytest.raises(Monst3rInputError, match=expect):
            load_flow_model(tmp_path / name)
    assert not marker.exists()


def test_sam2_checkpoint_that_is_not_one(tmp_path):
    from third_party import sam2_adapter

    if sam2_adapter.sam2_unavailable_reason():
        pytest.skip("sam2 not installed")
    (tmp_path / "t.pt").write_text("hello")
    torch.save({"a": torch.zeros(1)}, tmp_path / "nomodel.pt")
    for name, expect in (("t.pt", "is not a SAM2 checkpoint: it is a text file"),
                         ("nomodel.pt", "is not a usable SAM2 checkpoint")):
        with pytest.raises(Monst3rInputError, match=expect):
            sam2_adapter.build_video_predictor(sam2_adapter.DEFAULT_SAM2_CONFIG, tmp_path / name, "cpu")


# ============================================================================ images
def _rgb(h=48, w=64, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _view01(path, size=224):
    return load_images([str(path)], size, verbose=False)[0]["img"][0] * 0.5 + 0.5


def test_16bit_png_matches_8bit(tmp_path):
    import cv2

    a8 = _rgb()
    noise = np.random.default_rng(1).integers(0, 257, a8.shape)
    a16 = np.clip(a8.astype(np.int64) * 257 + noise - 128, 0, 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), a16[..., ::-1])
    cv2.imwrite(str(tmp_path / "rgb8.png"), a8[..., ::-1])
    cv2.imwrite(str(tmp_path / "g16.png"), a16[..., 0])
    cv2.imwrite(str(tmp_path / "g8.png"), a8[..., 0])
    for a, b in (("rgb16.png", "rgb8.png"), ("g16.png", "g8.png")):
        diff = (_view01(tmp_path / a) - _view01(tmp_path / b)).abs().max().item()
        assert diff <= 1 / 255 + 1e-6, (a, diff)
    assert _view01(tmp_path / "g16.png").mean() < 0.7  # not the old "almost pure white"


@pytest.mark.parametrize("mode", ["P", "RGBA", "CMYK", "LA", "L", "1", "I;16"])
def test_other_image_modes_load_as_rgb(tmp_path, mode):
    a8 = _rgb()
    im = PIL.Image.fromarray(a8)
    if mode == "I;16":
        im = PIL.Image.fromarray((a8[..., 0].astype(np.uint16) * 257))
        ref = np.repeat(a8[..., :1], 3, axis=2) / 255.0
    else:
        im = im.convert(mode)
        ref = np.asarray(im.convert("RGB")) / 255.0
    path = tmp_path / ("f.jpg" if mode == "CMYK" else "f.png")
    im.save(path)
    v = _view01(path, 512)
    assert v.shape == (3, 384, 512)
    assert abs(v.mean().item() - ref.mean()) < 0.03


def test_exif_rotation_is_applied(tmp_path):
    im = PIL.Image.fromarray(_rgb(48, 64))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees: the landscape file is a portrait photo
    im.save(tmp_path / "rot.jpg", exif=exif)
    v = load_images([str(tmp_path / "rot.jpg")], 512, verbose=False)[0]
    assert v["true_shape"].tolist() == [[512, 384]]


def test_decompression_bomb_is_one_clear_error(tmp_path, monkeypatch):
    PIL.Image.fromarray(_rgb()).save(tmp_path / "big.png")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Monst3rInputError, match="decompression-bomb limit of 2000 pixels") as exc:
        load_images(str(tmp_path), 224, verbose=False)
    assert "downscale" in str(exc.value) and "\n" not in str(exc.value)


def test_extreme_aspect_ratio_and_bad_sizes(tmp_path):
    PIL.Image.fromarray(np.zeros((10, 2000, 3), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(Monst3rInputError, match="thinner than one 16-pixel patch"):
        load_images([str(tmp_path / "thin.png")], 512, verbose=False)
    PIL.Image.fromarray(_rgb()).save(tmp_path / "ok.png")
    for kw, expect in ((dict(size=0), "image size"), (dict(size=512, fps=-1), "fps"),
                       (dict(size=512, num_frames=0), "num_frames")):
        with pytest.raises(Monst3rInputError, match=expect):
            load_images([str(tmp_path / "ok.png")], verbose=False, **kw)


# ---------------------------------------------------------------------------- dynamic masks
@pytest.fixture
def frames(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        PIL.Image.fromarray(_rgb(seed=i)).save(d / f"{i:05d}.jpg")
    return d


def _mask(h=48, w=64, value=255):
    m = np.zeros((h, w), np.uint8)
    m[10:20, 10:30] = value
    return m


def test_mask_folder_missing_or_differently_named(frames, tmp_path):
    with pytest.raises(Monst3rInputError, match="does not exist"):
        load_images(str(frames), 512, verbose=False, dynamic_mask_root=str(tmp_path / "nope"))
    other = tmp_path / "png_masks"
    other.mkdir()
    for i in range(3):
        PIL.Image.fromarray(_mask()).save(other / f"{i:05d}.png")
    with pytest.raises(Monst3rInputError, match="no mask for any of the 3 frames") as exc:
        load_images(str(frames), 512, verbose=False, dynamic_mask_root=str(other))
    assert "00000.png" in str(exc.value) and "file name of its frame" in str(exc.value)


def test_partially_missing_masks_warn_with_counts(frames, tmp_path, caplog):
    root = tmp_path / "masks"
    root.mkdir()
    for i in range(2):
        PIL.Image.fromarray(_mask()).save(root / f"{i:05d}.jpg")
    with caplog.at_level(logging.WARNING, logger="monst3r.utils.image"):
        views = load_images(str(frames), 512, verbose=False, dynamic_mask_root=str(root))
    assert "missing" in caplog.text and "1 of 3 frames" in caplog.text and "00002.jpg" in caplog.text
    assert [int(v["dynamic_mask"].sum()) > 0 for v in views] == [True, True, False]


def test_wrong_size_mask_is_an_error(frames, tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    for i in range(3):
        PIL.Image.fromarray(_mask(24, 32)).save(root / f"{i:05d}.jpg")
    with pytest.raises(Monst3rInputError, match="is 32x24 but its frame is 64x48"):
        load_images(str(frames), 512, verbose=False, dynamic_mask_root=str(root))


def test_binary_01_masks_and_full_masks(frames, tmp_path, caplog):
    root = tmp_path / "masks"
    root.mkdir()
    PIL.Image.fromarray(_mask(value=1)).save(root / "00000.png")  # 0/1 values: used, not all-False
    PIL.Image.fromarray(_mask(value=1)).save(root / "00001.png")
    PIL.Image.fromarray(np.full((48, 64), 255, np.uint8)).save(root / "00002.png")  # >= 80%: original ignores
    pngs = tmp_path / "pngframes"
    pngs.mkdir()
    for f in sorted(frames.iterdir()):
        PIL.Image.open(f).save(pngs / (f.stem + ".png"))
    with caplog.at_level(logging.WARNING, logger="monst3r.utils.image"):
        views = load_images(str(pngs), 512, verbose=False, dynamic_mask_root=str(root))
    assert int(views[0]["dynamic_mask"].sum()) > 0 and int(views[2]["dynamic_mask"].sum()) == 0
    assert "cover 80%" in caplog.text and "00002.png" in caplog.text


# ---------------------------------------------------------------------------- videos
def _avi(path, n=20):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(n):
        w.write(_rgb(seed=i))
    w.release()
    return path.read_bytes()


def test_video_with_mask_root_is_refused(tmp_path):
    _avi(tmp_path / "v.avi", 4)
    (tmp_path / "masks").mkdir()
    with pytest.raises(Monst3rInputError, match="need a folder of frames"):
        load_images(str(tmp_path / "v.avi"), 224, verbose=False, dynamic_mask_root=str(tmp_path / "masks"))


def test_truncated_video_warns_with_both_counts(tmp_path, caplog):
    data = _avi(tmp_path / "full.avi", 20)
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="monst3r.utils.image"):
        views = load_images(str(tmp_path / "cut.avi"), 224, verbose=False)
    assert 0 < len(views) < 20
    assert "announces 20 frames" in caplog.text and f"using the {len(views)} frames read" in caplog.text


def test_video_without_frames_is_an_error(tmp_path):
    data = _avi(tmp_path / "full.avi", 20)
    (tmp_path / "head.avi").write_bytes(data[: len(data) // 10])
    with pytest.raises(Monst3rInputError, match="no frame|cannot open video"):
        load_images(str(tmp_path / "head.avi"), 224, verbose=False)
    (tmp_path / "noise.mp4").write_bytes(os.urandom(2048))
    with pytest.raises(Monst3rInputError, match="video"):
        load_images(str(tmp_path / "noise.mp4"), 224, verbose=False)


# ============================================================================ expressions
@pytest.mark.parametrize("expr,expect", [
    ("100000000000 @ SyntheticDUSt3R(resolution=64)", "too large"),
    ("SyntheticDUSt3R(resolution=64, num_scenes=1000000000000)", "too large"),
    ("2 @ SyntheticDUSt3R(resolution=[0]*1000000000)", "too large"),
    ("SyntheticDUSt3R(resolution=(100000, 100000))", "between 16 and 4096"),
    ("SyntheticDUSt3R(resolution=-5)", "between 16 and 4096"),
    ("0 @ SyntheticDUSt3R(resolution=64)", "positive integer"),
    ("1000 * (1000000 @ SyntheticDUSt3R(resolution=64))", "sampler"),
    ("SyntheticDUSt3R(resolution=64, num_scenes=500000)", "num_scenes"),
    ("SyntheticDUSt3R(resolution=64, width=100000)", "too large|width"),
    ("10**100 @ SyntheticDUSt3R(resolution=64)", "not allowed"),
])
def test_dataset_expressions_with_absurd_sizes(expr, expect):
    from monst3r.datasets.loader import parse_dataset_expression

    with pytest.raises(SafeParseError, match=expect):
        parse_dataset_expression(expr)


def test_seeds_may_be_large():
    from monst3r.datasets.loader import parse_dataset_expression

    ds = parse_dataset_expression("4 @ SyntheticDUSt3R(resolution=64, num_scenes=1, seed=123456789012)")
    assert len(ds) == 4


@pytest.mark.parametrize("expr", ["[0]*1000000000", "ConfLoss(Regr3D(L21), alpha='a'*2000000000)",
                                  "ConfLoss(Regr3D(L21), alpha=1/0)"])
def test_criterion_expressions_that_would_allocate(expr):
    with pytest.raises(SafeParseError):
        parse_criterion(expr)


# ============================================================================ command lines
def _launch(capsys, *argv):
    import launch

    try:
        rc = launch.main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    return rc, _one_error_line(capsys.readouterr().err)


@pytest.fixture
def launch_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))


@pytest.mark.parametrize("argv,expect", [
    (["--mode=foo"], "invalid choice: 'foo' (choose from 'train', 'eval_pose', 'eval_depth')"),
    (["--mode=train"], "--mode=train needs --train_dataset"),
    (["--mode=train", "--train_dataset=8 @ SyntheticDUSt3R(split='train'"], "cannot parse dataset expression"),
    (["--mode=train", "--train_dataset=100000000000 @ SyntheticDUSt3R(resolution=64)"], "too large"),
    (["--mode=train", "--train_dataset=4 @ SintelDUSt3R(dataset_location='/nonexistent/x', resolution=64)"],
     "not found"),
    (["--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)", "--batch_size=0"], "--batch_size 0"),
    (["--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)", "--lr=nan"], "--lr nan"),
    (["--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)", "--device=tpu"], "not a device"),
    (["--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)", "--model=Foo()"], "not allowed"),
    (["--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)",
      "--model=" + TINY.replace("enc_embed_dim=32", "enc_embed_dim=10000000")], "invalid model configuration"),
    (["--mode=eval_pose", "--n_iter=0"], "--n_iter 0"),
])
def test_launch_user_errors(launch_on_path, capsys, tmp_path, argv, expect):
    rc, line = _launch(capsys, f"--model={TINY}", *argv, f"--output_dir={tmp_path / 'out'}", "--num_workers=0",
                       "--device=cpu" if "--device=tpu" not in argv else "--silent")
    assert rc == 2 and expect in line, line
    assert line.startswith("error:")


def test_launch_pretrained_that_is_not_a_checkpoint(launch_on_path, capsys, tmp_path):
    (tmp_path / "w.pth").write_text("hello")
    rc, line = _launch(capsys, "--mode=train", "--train_dataset=4 @ SyntheticDUSt3R(resolution=64)",
                       f"--model={TINY}", f"--pretrained={tmp_path / 'w.pth'}", f"--output_dir={tmp_path / 'o'}",
                       "--num_workers=0", "--device=cpu", "--test_dataset=")
    assert rc == 2 and "is not a MonST3R checkpoint: it is a text file" in line


@pytest.mark.parametrize("argv,expect", [
    (["-m", "monst3r.datasets.synthetic", "--out", "{tmp}/s", "--frames", "100000000"], "between 1 and"),
    (["-m", "monst3r.datasets.synthetic", "--out", "/proc/nope/x", "--frames", "2", "--size", "64x48"],
     "cannot write"),
    (["-m", "monst3r.eval.video_depth", "--eval_dataset", "foo"], "invalid choice"),
    (["data/prepare_eval_tum.py", "--bogus"], "unrecognized arguments"),
    (["data/prepare_waymo.py", "make-pairs", "--output_dir", "{tmp}/none"], "is not a folder"),
    (["launch.py", "--mode=nonsense"], "invalid choice"),
])
def test_module_command_lines(tmp_path, argv, expect):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2 and line.startswith("error:") and expect in line, proc.stderr


def test_palette_and_two_level_masks_are_binary(frames, tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    pngs = tmp_path / "pngframes"
    pngs.mkdir()
    for f in sorted(frames.iterdir()):
        PIL.Image.open(f).save(pngs / (f.stem + ".png"))
    pal = PIL.Image.fromarray(_mask(value=1), "P")
    pal.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # DAVIS style: index 1 = dark red (luminance 38)
    pal.save(root / "00000.png")
    PIL.Image.fromarray(_mask(value=128)).save(root / "00001.png")
    PIL.Image.fromarray(_mask(value=255)).save(root / "00002.png")
    sums = [int(v["dynamic_mask"].sum()) for v in load_images(str(pngs), 512, verbose=False,
                                                              dynamic_mask_root=str(root))]
    assert sums[0] == sums[1] == sums[2] > 0


def test_unsupported_files_in_a_folder_are_named(frames, caplog):
    (frames / "extra.tif").write_bytes(b"II*\x00")
    (frames / ".DS_Store").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="monst3r.utils.image"):
        views = load_images(str(frames), 224, verbose=False)
    assert len(views) == 3 and "1 file(s) of unsupported type skipped (extra.tif)" in caplog.text


@pytest.mark.parametrize("expr", ["1" + "+1" * 5000, "x" * 30000])
def test_expressions_too_long_or_deep(expr):
    from monst3r.datasets.loader import parse_dataset_expression

    with pytest.raises(SafeParseError, match="too deeply nested|characters is refused"):
        parse_dataset_expression(expr)
    with pytest.raises(SafeParseError, match="too deeply nested|characters is refused"):
        parse_criterion(expr)
