"""The network against the original's outputs (shared/golden/model, README there gives the tolerances)."""
import hashlib
import json

import numpy as np
import pytest
import torch

from golden_weights import golden_state_dict
from monst3r.model import AsymmetricCroCo3DStereo, load_model, model_from_string
from monst3r.utils.pair_batches import interleave



@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only in this module (without touching the global autograd state of other test modules)."""
    with torch.no_grad():
        yield


def _manifest(golden, name):
    return json.loads(golden("model", f"{name}_manifest.json").read_text())


@pytest.fixture(scope="module")
def fwd(golden):
    return np.load(golden("model", "forward.npz"))


@pytest.fixture(scope="module")
def small_dpt(golden):
    return _golden_model(golden, "small_dpt")


@pytest.fixture(scope="module")
def tiny_linear(golden):
    return _golden_model(golden, "tiny_linear")


def _golden_model(golden, name):
    """The golden test network ``name`` (its manifest's model string) with its deterministic weights, eval mode."""
    man = _manifest(golden, name)
    m = model_from_string(man["model_string"]).eval()
    m.load_state_dict(golden_state_dict(man))
    return m


def _views(F, key):
    key = key.replace("tiny_linear/", "small_dpt/")  # the linear model was run on the same inputs
    views = []
    for s in ("1", "2"):
        u8 = torch.from_numpy(F[f"{key}/view{s}_img_u8"])
        img = (u8.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
        views.append(dict(img=img, true_shape=torch.from_numpy(F[f"{key}/view{s}_true_shape"])))
    views[0]["instance"] = ["a", "b", "c", "d"]
    views[1]["instance"] = ["b", "a", "d", "c"]
    return views


def assert_pts_close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    err = np.linalg.norm(a - b, axis=-1)
    assert (err <= 5e-4 * np.linalg.norm(b, axis=-1) + 2e-5).all(), f"max point error {err.max()}"
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def assert_conf_close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    assert (np.abs(a - b) / np.abs(b)).max() <= 1e-4


def check_outputs(res1, res2, F, key, sub=None):
    outs = {"pred1_pts3d": res1["pts3d"], "pred1_conf": res1["conf"], "pred2_conf": res2["conf"],
            "pred2_pts3d_in_other_view": res2["pts3d_in_other_view"]}
    assert list(res1) == ["pts3d", "conf"] and list(res2) == ["conf", "pts3d_in_other_view"]
    for name, val in outs.items():
        val = val.numpy()
        if sub:
            val = val[:, ::sub, ::sub]
        (assert_pts_close if "pts3d" in name else assert_conf_close)(val, F[f"{key}/{name}"])


def test_golden_weights_match_manifest(golden):
    for name in ("tiny_linear", "small_dpt"):
        man = _manifest(golden, name)
        sd = golden_state_dict(man)
        for e in man["state_dict"][:60] + man["state_dict"][-20:]:
            v = sd[e["key"]].numpy()
            assert hashlib.sha256(v.astype("<f4").tobytes()).hexdigest() == e["sha256"], e["key"]


@pytest.mark.parametrize("name", ["small_dpt", "tiny_linear"])
def test_state_dict_layout(golden, name):
    man = _manifest(golden, name)
    m = model_from_string(man["model_string"])
    sd = m.state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(e["key"], e["shape"]) for e in man["state_dict"]]
    assert sum(p.numel() for p in m.parameters()) == man["n_parameters_unique"]


@pytest.mark.parametrize("tag", ["L160", "P160", "M160"])
def test_small_dpt_forward(small_dpt, fwd, tag):
    v1, v2 = _views(fwd, f"small_dpt/{tag}")
    check_outputs(*small_dpt(v1, v2), fwd, f"small_dpt/{tag}")


@pytest.mark.parametrize("tag", ["L160", "M160"])
def test_tiny_linear_forward(tiny_linear, fwd, tag):
    v1, v2 = _views(fwd, f"tiny_linear/{tag}")
    check_outputs(*tiny_linear(v1, v2), fwd, f"tiny_linear/{tag}")


@pytest.mark.slow
def test_small_dpt_square_224(small_dpt, fwd, golden):
    imgs = np.load(golden("model", "images.npz"))["img224_u8"]
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    a, b, c, d = x[0], x[1], x[4], x[5]
    v1 = dict(img=torch.stack([a, b, c, d]), instance=["a", "b", "c", "d"])
    v2 = dict(img=torch.stack([b, a, d, c]), instance=["b", "a", "d", "c"])
    check_outputs(*small_dpt(v1, v2), fwd, "small_dpt/S224", sub=4)


def test_small_dpt_intermediates(small_dpt, fwd):
    key = "small_dpt/L160"
    v1, v2 = _views(fwd, key)
    (s1, s2), (f1, f2), (p1, p2) = small_dpt._encode_symmetrized(v1, v2)
    np.testing.assert_allclose(f1.numpy(), fwd[f"{key}/enc_feat1"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f2.numpy(), fwd[f"{key}/enc_feat2"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(p1.numpy(), fwd[f"{key}/pos1"])
    d1, d2 = small_dpt._decoder(f1, p1, f2, p2)
    for layer in (0, 5, 7, 10):
        np.testing.assert_allclose(d1[layer].numpy(), fwd[f"{key}/dec1_layer{layer}"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(d2[layer].numpy(), fwd[f"{key}/dec2_layer{layer}"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_symmetric_shortcut_equals_full_encoding(small_dpt, fwd):
    v1, v2 = _views(fwd, "small_dpt/L160")
    r_short = small_dpt(v1, v2)
    v1n, v2n = dict(v1, instance=["a", "b", "c", "d"]), dict(v2, instance=["x", "y", "z", "w"])
    r_full = small_dpt(v1n, v2n)
    for a, b in zip(r_short, r_full):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_natural_portrait_equals_manyar_transposed(small_dpt, fwd):
    """PatchEmbedDust3R on natural-orientation portraits == ManyAR on their transposes, transposed back."""
    natural = model_from_string(
        "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
        "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
        "enc_embed_dim=192, enc_depth=3, enc_num_heads=3, dec_embed_dim=128, dec_depth=10, dec_num_heads=4)",
        for_inference=True).eval()
    natural.load_state_dict(small_dpt.state_dict())
    v1, v2 = _views(fwd, "small_dpt/P160")
    for v in (v1, v2):
        v["img"] = v["img"].swapaxes(-1, -2).contiguous()
        v["true_shape"] = v["true_shape"]
    r1, r2 = natural(v1, v2)
    torch.testing.assert_close(r1["pts3d"].swapaxes(1, 2).numpy(), fwd["small_dpt/P160/pred1_pts3d"],
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r2["conf"].swapaxes(1, 2).numpy(), fwd["small_dpt/P160/pred2_conf"],
                               rtol=1e-4, atol=1e-4)


def test_deepcopy_uses_copied_heads(tiny_linear, fwd):
    import copy

    m2 = copy.deepcopy(tiny_linear)
    with torch.no_grad():
        m2.downstream_head1.proj.bias.add_(1.0)
    v1, v2 = _views(fwd, "tiny_linear/L160")
    assert not torch.allclose(m2(v1, v2)[0]["pts3d"], tiny_linear(v1, v2)[0]["pts3d"])


def test_tiny_linear_pth_and_hub_folder(golden, fwd):
    v1, v2 = _views(fwd, "tiny_linear/L160")
    for path in (golden("model", "tiny_linear", "tiny_linear.pth"), golden("model", "tiny_linear", "hf")):
        m = load_model(path, device="cpu")
        assert not m.training
        check_outputs(*m(v1, v2), fwd, "tiny_linear/L160")
    m = AsymmetricCroCo3DStereo.from_pretrained(golden("model", "tiny_linear", "hf"), for_inference=False)
    assert m.patch_embed_cls == "ManyAR_PatchEmbed" and m.landscape_only
    check_outputs(*m(v1, v2), fwd, "tiny_linear/L160")


@pytest.mark.slow
def test_save_pretrained_roundtrip(small_dpt, golden, tmp_path, fwd):
    small_dpt.save_pretrained(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg == json.loads(golden("model", "small_dpt", "config.json").read_text())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    man = _manifest(golden, "small_dpt")
    assert keys == {e["key"] for e in man["state_dict"]} - set(man["keys_dropped_by_safetensors_save_model"])
    m = load_model(tmp_path / "hf", for_inference=False)
    v1, v2 = _views(fwd, "small_dpt/L160")
    check_outputs(*m(v1, v2), fwd, "small_dpt/L160")


@pytest.mark.slow
def test_demo_path_inference_from_pth(small_dpt, golden, fwd, tmp_path):
    """`.pth` (original format) -> load_model -> load_images -> make_pairs -> inference == original."""
    import argparse

    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference
    from monst3r.utils.image import load_images

    model_str = json.loads(golden("model", "small_dpt", "pth_args.json").read_text())["args_model"]
    torch.save({"args": argparse.Namespace(model=model_str, pretrained=None), "model": small_dpt.state_dict(),
                "epoch": 0}, tmp_path / "small.pth")
    model = load_model(tmp_path / "small.pth", device="cpu")
    assert model.patch_embed_cls == "PatchEmbedDust3R" and not model.landscape_only
    frames = [str(golden("model", "frames", f"0000{i}.jpg")) for i in range(3)]
    imgs = load_images(frames, size=160, verbose=False)
    out = inference(make_pairs(imgs, "complete", symmetrize=True), model, "cpu", batch_size=4, verbose=False)
    meta = json.loads(golden("model", "forward.json").read_text())["inference"]
    assert list(out) == meta["top_keys"] and out["loss"] is None
    assert out["view1"]["idx"] == meta["view1_idx"] and out["view2"]["idx"] == meta["view2_idx"]
    assert [s.split("/")[-1] for s in out["view1"]["instance"]] == meta["view1_instance"]
    for side in ("view1", "view2"):
        for k, spec in meta[side].items():
            if spec["type"] == "Tensor":
                assert list(out[side][k].shape) == spec["shape"] and str(out[side][k].dtype) == spec["dtype"], k
    for name in ("pred1_pts3d", "pred2_pts3d_in_other_view"):
        assert_pts_close(out[name[:5]][name[6:]].numpy(), fwd[f"inference/{name}"])
    for name in ("pred1_conf", "pred2_conf"):
        assert_conf_close(out[name[:5]][name[6:]].numpy(), fwd[f"inference/{name}"])


def test_inference_mixed_shapes(small_dpt, golden, tmp_path):
    """Landscape + natural portrait: batch size forced to 1, list outputs (original's structure and sums)."""
    import PIL.Image

    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference
    from monst3r.model import normalize_for_inference, build_model
    from monst3r.utils.image import load_images

    meta = json.loads(golden("model", "forward.json").read_text())["inference"]["mixed_shapes"]
    src = golden("model", "frames")
    PIL.Image.open(src / "00001.jpg").transpose(PIL.Image.ROTATE_90).save(tmp_path / "00001.png")
    imgs = load_images([str(src / "00000.jpg"), str(tmp_path / "00001.png")], size=160, verbose=False)
    man = _manifest(golden, "small_dpt")
    from monst3r.utils.parsing import parse_model_string

    model = build_model(parse_model_string(man["model_string"])[1], for_inference=True).eval()
    model.load_state_dict(small_dpt.state_dict())
    out = inference(make_pairs(imgs, "complete", symmetrize=True), model, "cpu", batch_size=4, verbose=False)
    assert isinstance(out["pred1"]["pts3d"], list)
    assert [list(t.shape) for t in out["pred1"]["pts3d"]] == meta["pred1"]["pts3d"]
    assert [list(t.shape) for t in out["view1"]["img"]] == meta["view1_img"]
    np.testing.assert_allclose([float(t.double().sum()) for t in out["pred1"]["pts3d"]], meta["pred1_pts3d_sum"],
                               rtol=1e-4)
    np.testing.assert_allclose([float(t.double().sum()) for t in out["pred2"]["pts3d_in_other_view"]],
                               meta["pred2_pts3d_in_other_view_sum"], rtol=1e-4)


def test_vitl_manifest_on_meta(golden):
    man = json.loads(golden("model", "vitl_manifest.json").read_text())
    from monst3r.model import OFFICIAL_MODEL_STRING
    from monst3r.utils.parsing import parse_model_string

    assert parse_model_string(man["model_string"])[1] == {
        k: tuple(v) if isinstance(v, list) else v for k, v in man["kwargs"].items()}
    assert parse_model_string(OFFICIAL_MODEL_STRING)[1] == parse_model_string(man["model_string"])[1]
    with torch.device("meta"):
        m = model_from_string(man["model_string"])
    sd = m.state_dict()
    assert [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()] == \
           [(e["key"], e["shape"], e["dtype"]) for e in man["state_dict"]]
    assert {k: v.requires_grad for k, v in m.named_parameters()} == \
           {e["key"]: e["requires_grad"] for e in man["state_dict"] if e["key"] in dict(m.named_parameters())}
    assert sum(p.numel() for p in m.parameters()) == man["n_parameters_unique"]
    assert sum(v.numel() for v in sd.values()) == man["n_state_dict_values"]
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == man["n_trainable_with_freeze_encoder"]
    for name, count in man["per_module_unique_params"].items():
        mod = getattr(m, name)
        n = mod.numel() if isinstance(mod, torch.nn.Parameter) else sum(p.numel() for p in mod.parameters())
        assert n == count, name
    assert m.downstream_head1.dpt.hooks == [0, 6, 9, 12]


def test_rope_golden(golden):
    from croco.models.pos_embed import PositionGetter, RoPE2D

    R = np.load(golden("model", "rope.npz"))
    pos = PositionGetter()(2, 3, 4, "cpu")
    np.testing.assert_array_equal(pos.numpy(), R["positions_h3_w4"])
    rope = RoPE2D(freq=100.0)
    out = rope(torch.from_numpy(R["tokens_hd64"]), pos)
    np.testing.assert_allclose(out.numpy(), R["out_hd64"], rtol=1e-5, atol=1e-6)
    out = rope(torch.from_numpy(R["tokens_hd32"]), torch.from_numpy(R["positions_mixed"]))
    np.testing.assert_allclose(out.numpy(), R["out_hd32_mixed"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_encoder_cache_matches_per_pair_encoding(small_dpt, golden):
    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference
    from monst3r.utils.image import load_images

    imgs = load_images(str(golden("model", "frames")), size=160, verbose=False)
    pairs = make_pairs(imgs, "swin-2-noncyclic", symmetrize=True)
    a = inference(pairs, small_dpt, "cpu", batch_size=3, verbose=False, encoder_cache=True)
    b = inference(pairs, small_dpt, "cpu", batch_size=3, verbose=False, encoder_cache=False)
    for side, key in (("pred1", "pts3d"), ("pred1", "conf"), ("pred2", "pts3d_in_other_view"), ("pred2", "conf")):
        torch.testing.assert_close(a[side][key], b[side][key], rtol=1e-4, atol=1e-4)
    assert a["view1"]["idx"] == b["view1"]["idx"] and a["view2"]["instance"] == b["view2"]["instance"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small_dpt", "tiny_linear"])
def test_bf16_autocast_agrees_with_fp32(name, request, golden):
    """``inference(dtype=torch.bfloat16)``: encoder and decoders under bf16 autocast, heads in fp32. Stated
    tolerance (README, benchmarks): relative L2 error of pointmaps < 2e-2 and of confidences < 1e-2 (bf16 keeps
    8 mantissa bits; measured about 0.5-1.1e-2 and 0.2-0.5e-2 on these models)."""
    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference
    from monst3r.utils.image import load_images

    model = request.getfixturevalue(name)
    imgs = load_images(str(golden("model", "frames")), size=160, verbose=False)
    pairs = make_pairs(imgs, "swin-2-noncyclic", symmetrize=True)
    a = inference(pairs, model, "cpu", batch_size=4, verbose=False)
    b = inference(pairs, model, "cpu", batch_size=4, verbose=False, dtype=torch.bfloat16)
    for side, key, tol in (("pred1", "pts3d", 2e-2), ("pred1", "conf", 1e-2),
                           ("pred2", "pts3d_in_other_view", 2e-2), ("pred2", "conf", 1e-2)):
        x, y = a[side][key], b[side][key]
        assert y.dtype == torch.float32 and torch.isfinite(y).all()
        rel = float((x - y).norm() / x.norm())
        assert 1e-5 < rel < tol, (key, rel)  # > 1e-5: the bf16 path really ran
