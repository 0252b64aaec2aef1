"""Bad input gets one clear Monst3rInputError, never a deep traceback, and never runs code."""
import argparse
import os
import shutil

import pytest
import torch

from monst3r.errors import Monst3rInputError
from monst3r.model import CheckpointError, load_model
from monst3r.utils.image import load_images
from monst3r.utils.parsing import SafeParseError, parse_model_string, safe_eval
from pickle_payload import PicklePayload


def test_missing_path(tmp_path):
    with pytest.raises(Monst3rInputError, match="not found"):
        load_images(str(tmp_path / "nope"), 512, verbose=False)


def test_empty_folder(tmp_path):
    with pytest.raises(Monst3rInputError, match="no images"):
        load_images(str(tmp_path), 512, verbose=False)


def test_non_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(Monst3rInputError, match="unsupported file type"):
        load_images([str(tmp_path / "notes.txt")], 512, verbose=False)
    (tmp_path / "fake.jpg").write_text("this is not a jpeg")
    with pytest.raises(Monst3rInputError, match="cannot read image"):
        load_images([str(tmp_path / "fake.jpg")], 512, verbose=False)


def test_truncated_jpeg(golden, tmp_path):
    data = golden("model", "frames", "00000.jpg").read_bytes()
    (tmp_path / "00000.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(Monst3rInputError, match="cannot read image"):
        load_images(str(tmp_path), 512, verbose=False)


def test_undecodable_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(os.urandom(4096))
    with pytest.raises(Monst3rInputError, match="video"):
        load_images(str(tmp_path / "clip.mp4"), 512, verbose=False)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pth")


def test_truncated_checkpoint(golden, tmp_path):
    data = golden("model", "tiny_linear", "tiny_linear.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "cut.pth")
    shutil.copytree(golden("model", "tiny_linear", "hf"), tmp_path / "hf")
    st = tmp_path / "hf" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "hf")


def test_checkpoint_with_wrong_keys(golden, tmp_path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(golden("model", "tiny_linear", "tiny_linear.pth"), weights_only=True)
    sd = ckpt["model"]
    sd.pop("enc_norm.weight")
    sd["prediction_head.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "bad.pth")
    assert "enc_norm.weight" in str(exc.value) and "prediction_head.weight" in str(exc.value)


def test_checkpoint_without_second_decoder_is_filled(golden, tmp_path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(golden("model", "tiny_linear", "tiny_linear.pth"), weights_only=True)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("dec_blocks2")}
    torch.save(ckpt, tmp_path / "croco_like.pth")
    m = load_model(tmp_path / "croco_like.pth")
    for (k1, v1), (k2, v2) in zip(m.dec_blocks.state_dict().items(), m.dec_blocks2.state_dict().items()):
        assert torch.equal(v1, v2)


def test_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"args": argparse.Namespace(model="x"), "model": {}, "evil": PicklePayload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_model_string_code_is_refused(golden, tmp_path):
    marker = tmp_path / "pwned2"
    evil = f"__import__('os').system('touch {marker}')"
    torch.save({"args": argparse.Namespace(model=evil), "model": {}}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="model string"):
        load_model(tmp_path / "evil2.pth")
    assert not marker.exists()


@pytest.mark.parametrize("s", [
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed',                         "
    "img_size=(512, 512), head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
    "conf_mode=('exp', 1, inf),                         enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
    "dec_embed_dim=768, dec_depth=12, dec_num_heads=12, freeze='encoder')",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100',patch_embed_cls='PatchEmbedDust3R',img_size=(512,512),"
    "head_type='dpt',output_mode='pts3d',depth_mode=('exp',-inf,inf),conf_mode=('exp',1,inf),enc_embed_dim=1024,"
    "enc_depth=24,enc_num_heads=16,dec_embed_dim=768,dec_depth=12,dec_num_heads=12,freeze='encoder',"
    "landscape_only=False)",
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=[512, 512], depth_mode=['exp', -float('inf'), "
    "float('inf')], conf_mode=('exp', 1, np.inf), enc_embed_dim=1024, head_type='dpt',\n output_mode='pts3d')",
])
def test_model_string_forms(s):
    name, kw = parse_model_string(s)
    assert name == "AsymmetricCroCo3DStereo"
    assert kw["depth_mode"][1] == float("-inf") and kw["conf_mode"][2] == float("inf")


@pytest.mark.parametrize("s", [
    "os.system('ls')", "AsymmetricCroCo3DStereo(evil=1)", "AsymmetricCroCo3DStereo(1, 2)",
    "AsymmetricCroCo3DStereo(pos_embed=open('x'))", "AsymmetricCroCo3DStereo(**{'a': 1})",
    "(lambda: 1)()", "AsymmetricCroCo3DStereo(img_size=().__class__)", "Other(pos_embed='RoPE100')",
])
def test_model_string_rejections(s):
    with pytest.raises(SafeParseError):
        parse_model_string(s)


def test_safe_eval_never_calls_unknown_names():
    with pytest.raises(SafeParseError):
        safe_eval("print('x')")
    assert safe_eval("(1, -inf, [2.5, 'a'])") == (1, float("-inf"), [2.5, "a"])
