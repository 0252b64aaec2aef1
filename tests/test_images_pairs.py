"""load_images and make_pairs against the original (shared/golden/model/images.*, pairs.json)."""
import json

import numpy as np
import PIL.Image
import pytest

from monst3r.errors import Monst3rInputError
from monst3r.image_pairs import make_pairs
from monst3r.utils.image import crop_img, load_images


def _u8(view):
    return ((view["img"][0].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("size", [512, 224, 160])
def test_load_images_matches_original(golden, size):
    ref = np.load(golden("model", "images.npz"))
    meta = json.loads(golden("model", "images.json").read_text())[str(size)]
    views = load_images(str(golden("model", "frames")), size=size, verbose=False, faithful_mask_path=True)
    assert [v["idx"] for v in views] == meta["idx"]
    assert [v["instance"].split("/")[-1] for v in views] == meta["instance_basename"]
    assert list(views[0]) == meta["keys"]
    for i, v in enumerate(views):
        assert list(v["img"].shape) == meta["img_shape"] and v["img"].dtype.is_floating_point
        np.testing.assert_array_equal(_u8(v), ref[f"img{size}_u8"][i])
        # the float image is exactly (u8/255 - 0.5)/0.5
        exact = (ref[f"img{size}_u8"][i].astype(np.float32) / 255 - 0.5) / 0.5
        np.testing.assert_array_equal(v["img"][0].permute(1, 2, 0).numpy(), exact)
        np.testing.assert_array_equal(v["true_shape"], ref[f"true_shape{size}"][i][None])
        np.testing.assert_array_equal(v["mask"][0].numpy(), ref[f"mask{size}"][i])
        np.testing.assert_array_equal(v["dynamic_mask"][0].numpy(), ref[f"dynamic_mask{size}"][i])


def test_portrait_frames_stay_portrait(golden, tmp_path):
    ref = np.load(golden("model", "images.npz"))
    for name in ("00000", "00001"):
        PIL.Image.open(golden("model", "frames", f"{name}.jpg")).transpose(PIL.Image.ROTATE_90).save(
            tmp_path / f"{name}.png")
    views = load_images(str(tmp_path), size=160, verbose=False)
    for i, v in enumerate(views):
        np.testing.assert_array_equal(_u8(v), ref["img160p_u8"][i])
        assert v["true_shape"].tolist() == [[160, 80]]


def test_dynamic_mask_bug_fixed_by_default(golden):
    """The original thresholds the image itself when no mask path exists (34 px on frame 0 at 512)."""
    check = json.loads(golden("model", "images.json").read_text())["dynamic_mask_bug_check"]
    frame = str(golden("model", "frames", "00000.jpg"))
    assert int(load_images([frame], 512, verbose=False)[0]["dynamic_mask"].sum()) == 0
    assert int(load_images([frame], 512, verbose=False, faithful_mask_path=True)[0]["dynamic_mask"].sum()) == \
        check["expected_if_image_used_as_mask"]


def test_dynamic_mask_root(golden, tmp_path):
    frame = golden("model", "frames", "00000.jpg")
    w, h = PIL.Image.open(frame).size
    m = np.zeros((h, w), np.uint8)
    m[100:300, 200:400] = 255
    PIL.Image.fromarray(m).save(tmp_path / "00000.jpg", quality=100)
    v = load_images([str(frame)], 512, verbose=False, dynamic_mask_root=str(tmp_path))[0]
    assert 0 < int(v["dynamic_mask"].sum()) < v["dynamic_mask"].numel() // 2


def test_crop_rules(golden):
    rules = json.loads(golden("model", "images.json").read_text())["crop_rules"]
    for r in rules:
        img = PIL.Image.new("RGB", tuple(r["in_wh"]))
        out = crop_img(img, r["size"], r["square_ok"], r["crop"])
        if r["error"]:
            # original TypeError on square inputs with crop=False (bug): we give the crop path's size
            ref = crop_img(img, r["size"], r["square_ok"], True)
            assert out.size == ref.size
        else:
            assert list(out.size) == r["out_wh"], r


def test_video_sampling(golden):
    meta = json.loads(golden("model", "images.json").read_text())["video_cases"]
    video = str(golden("model", meta["file"]))
    for case in meta["cases"]:
        views = load_images(video, size=160, fps=case["fps"], num_frames=case["num_frames"], verbose=False)
        assert len(views) == case["n"]
        assert [v["instance"][len(video):] for v in views] == case["instance_suffix"]
        assert [v["idx"] for v in views] == case["idx"]
        assert list(views[0]["img"].shape) == case["img_shape"]
        gray = [int(round((_u8(v).mean() - 30) / 3)) for v in views]
        assert gray == case["frame_id_from_gray"]


def test_list_input_sorting_and_append(golden):
    meta = json.loads(golden("model", "images.json").read_text())["list_input_sorting"]
    paths = [str(golden("model", "frames", n)) for n in meta["input"]]
    views = load_images(paths, 160, verbose=False)
    assert [v["instance"].split("/")[-1] for v in views] == meta["output"]
    acc = []
    ret = load_images(paths, 160, verbose=False, imgs=acc)
    ret2 = load_images(paths, 160, verbose=False, imgs=acc)
    assert ret is acc and ret2 is acc and [v["idx"] for v in acc] == meta["idx"]


def test_make_pairs_faithful_matches_original(golden):
    cases = json.loads(golden("model", "pairs.json").read_text())["cases"]
    for c in cases:
        imgs = [dict(idx=i) for i in range(c["n"])]
        got = make_pairs(imgs, c["scene_graph"], c["prefilter"], c["symmetrize"], c["force_symmetrize"],
                         faithful=True)
        assert [[a["idx"], b["idx"]] for a, b in got] == c["pairs"], c


def test_make_pairs_default_fixes(golden):
    """Default mode equals the original except for the documented fixes (swin-1x symmetrised, unknown graph)."""
    cases = json.loads(golden("model", "pairs.json").read_text())["cases"]
    for c in cases:
        imgs = [dict(idx=i) for i in range(c["n"])]
        args = (imgs, c["scene_graph"], c["prefilter"], c["symmetrize"], c["force_symmetrize"])
        if c["scene_graph"] == "unknown_graph":
            with pytest.raises(Monst3rInputError, match="unknown scene graph"):
                make_pairs(*args)
            continue
        got = [[a["idx"], b["idx"]] for a, b in make_pairs(*args)]
        sg = c["scene_graph"]
        if sg.startswith("swin-1") and sg.split("-")[1] != "1" and c["symmetrize"]:
            half = c["pairs"]
            assert got == half + [[j, i] for i, j in half]
        else:
            assert got == c["pairs"], c
    demo = [c for c in cases if c["n"] == 65][0]
    assert len(demo["pairs"]) == 600


def test_make_pairs_returns_the_view_dicts():
    imgs = [dict(idx=i) for i in range(4)]
    pairs = make_pairs(imgs, "complete")
    assert all(a is imgs[a["idx"]] and b is imgs[b["idx"]] for a, b in pairs)
