"""Optical flow (SEA-RAFT 'M', classic RAFT), forward-backward validity and SAM2 refinement (issue 5).

Golden data: ``shared/golden/flow`` (README there). Large networks use the README's deterministic "recipe"
weights regenerated from the manifests; the tiny SEA-RAFT weights are stored.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from monst3r.cloud_opt.optical_flow import compute_pair_flows, flow_consistency_terms, flow_validity_mask
from monst3r.cloud_opt.sam2_refine import Sam2Refinement, refine_motion_masks_with_sam2
from monst3r.errors import Monst3rInputError
from third_party import sam2_adapter
from third_party.raft import RAFT, SEARAFT, SEARAFTConfig, InputPadder, load_flow_model
from third_party.raft.common import CorrPyramid, coords_grid

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- helpers
def recipe_weights(manifest: dict, seed: int, gain: float = 0.7) -> dict:
    """The golden README's deterministic random weights (numpy legacy RandomState, manifest order)."""
    rs = np.random.RandomState(seed)
    out: dict = {}
    for entry in manifest["state_dict"]:
        key, shape = entry["key"], tuple(entry["shape"])
        if key.endswith("num_batches_tracked"):
            out[key] = np.zeros(shape, dtype=np.int64)
            continue
        if "alias_of" in entry:
            out[key] = out[entry["alias_of"]]
            continue
        z = rs.standard_normal(shape)
        if key.endswith("running_mean"):
            v = 0.1 * z
        elif key.endswith("running_var"):
            v = np.exp(0.2 * z)
        elif key.endswith("gamma"):
            v = 0.1 * z
        elif len(shape) >= 2:
            v = z * gain / np.sqrt(np.prod(shape[1:]))
        elif key.endswith("bias"):
            v = 0.05 * z
        elif key.endswith("weight"):
            v = 1 + 0.1 * z
        else:
            raise KeyError(key)
        out[key] = v.astype(np.float32)
    return out


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def to_torch_sd(weights: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}


def nchw(x: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in 0..255."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).float()


def assert_close(a: torch.Tensor, b: np.ndarray, atol: float, rtol: float = 0.0, what: str = "") -> float:
    a = a.detach().cpu().numpy()
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = np.abs(a - b)
    bound = atol + rtol * np.abs(b)
    assert np.all(err <= bound), f"{what}: max err {err.max():.3g}, worst excess {(err - bound).max():.3g}"
    return float(err.max())


def check_manifest(model: torch.nn.Module, manifest: dict) -> None:
    sd = model.state_dict()
    expected = [(e["key"], tuple(e["shape"])) for e in manifest["state_dict"]]
    got = [(k, tuple(v.shape)) for k, v in sd.items()]
    assert got == expected


def small_config() -> SEARAFTConfig:
    """A very small SEA-RAFT for fast end-to-end tests with random weights."""
    return SEARAFTConfig(dim=32, radius=2, initial_dim=16, block_dims=(16, 24, 32), blocks_per_stage=(1, 1, 1),
                         num_blocks=1)


def synthetic_images(n: int = 3, h: int = 128, w: int = 136, seed: int = 0) -> torch.Tensor:
    """Smooth random texture translated by a few pixels per frame: ``[N, H, W, 3]`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8 + 2, w // 8 + 2, generator=g)
    big = torch.nn.functional.interpolate(base, size=(h + 8 * n, w + 8 * n), mode="bicubic", align_corners=False)
    frames = [big[0, :, 2 * k:2 * k + h, 3 * k:3 * k + w] for k in range(n)]
    return torch.stack(frames).permute(0, 2, 3, 1).clamp(0, 1).contiguous()


@functools.lru_cache(maxsize=1)
def _searaft_m_recipe(manifest_path: Path, checksums_path: Path) -> SEARAFT:
    checks = load_json(checksums_path)
    model = SEARAFT()
    model.load_state_dict(to_torch_sd(recipe_weights(load_json(manifest_path), checks["seed"], checks["gain"])),
                          strict=True)
    return model.eval()


@pytest.fixture
def searaft_m(golden) -> SEARAFT:
    """SEA-RAFT 'M' with the recipe weights (built once per session)."""
    return _searaft_m_recipe(golden("flow", "searaft_M_manifest.json"), golden("flow", "searaft_M_recipe_checksums.json"))


@pytest.fixture
def m_golden(golden):
    return np.load(golden("flow", "searaft_M_golden.npz"))


# ------------------------------------------------------------------------------------ architecture / keys
def test_searaft_m_keys_and_shapes_match_manifest(golden):
    manifest = load_json(golden("flow", "searaft_M_manifest.json"))
    with torch.device("meta"):
        model = SEARAFT()
    check_manifest(model, manifest)
    assert len(model.state_dict()) == manifest["num_state_dict_entries"] == 472
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == manifest["num_parameters(unique)"]
    assert model.cfg.corr_channel == manifest["derived"]["corr_channel"]
    assert SEARAFTConfig.from_original_json(manifest["config"]) == SEARAFTConfig()


def test_searaft_tiny_and_raft_classic_keys_match_manifests(golden):
    tiny = load_json(golden("flow", "searaft_tiny_manifest.json"))
    with torch.device("meta"):
        check_manifest(SEARAFT(SEARAFTConfig.from_original_json(tiny["config"])), tiny)
        check_manifest(RAFT(), load_json(golden("flow", "raft_classic_manifest.json")))


def test_recipe_weights_match_checksums_and_tiny_file(golden):
    for name in ("searaft_M", "raft_classic"):
        manifest = load_json(golden("flow", f"{name}_manifest.json"))
        checks = load_json(golden("flow", f"{name}_recipe_checksums.json"))
        weights = recipe_weights(manifest, checks["seed"], checks["gain"])
        for key, (s, ss) in checks["sum_and_sumsq_per_key"].items():
            v = weights[key].astype(np.float64)
            assert v.sum() == pytest.approx(s, rel=1e-12, abs=0), key
            assert (v * v).sum() == pytest.approx(ss, rel=1e-12, abs=0), key
    from safetensors.numpy import load_file

    stored = load_file(str(golden("flow", "searaft_tiny_weights.safetensors")))
    ours = recipe_weights(load_json(golden("flow", "searaft_tiny_manifest.json")), 20240602)
    assert set(stored) == set(ours)
    for key, value in ours.items():
        np.testing.assert_array_equal(stored[key], value, err_msg=key)


# ------------------------------------------------------------------------------------ numerics vs golden
def test_searaft_tiny_golden(golden):
    g = np.load(golden("flow", "searaft_tiny_golden.npz"))
    m = np.load(golden("flow", "searaft_M_golden.npz"))
    # loads through the public loader: architecture and sizes come from the keys
    model = load_flow_model(golden("flow", "searaft_tiny_weights.safetensors"), "cpu")
    assert isinstance(model, SEARAFT) and model.cfg.radius == 3 and model.cfg.dim == 64
    a1, a2 = nchw(m["caseA_img1"]), nchw(m["caseA_img2"])
    with torch.no_grad():
        flows, final = model(a1, a2, iters=4, test_mode=True)
        assert len(flows) == 5 and final is flows[-1]
        for k, f in enumerate(flows):
            assert_close(f, g["caseA_flows_iters4"][k], 1e-4, 1e-5, f"tiny flow {k}")
        out = model(a1, a2, iters=4)
        assert_close(out["info"][-1], g["caseA_info_final_iters4"], 1e-5, what="tiny info")
        assert_close(out["nf"][-1], g["caseA_nf_final_iters4"], 1e-4, what="tiny nf")
        final_b = model(nchw(m["caseB_img1"]), nchw(m["caseB_img2"]), iters=6, test_mode=True)[1]
        assert_close(final_b, g["caseB_final_iters6"], 1e-4, 1e-5, "tiny case B")


def test_searaft_m_golden_flows(searaft_m, m_golden):
    g = m_golden
    a1, a2 = nchw(g["caseA_img1"]), nchw(g["caseA_img2"])
    b1, b2 = nchw(g["caseB_img1"]), nchw(g["caseB_img2"])
    with torch.no_grad():
        flows, final = searaft_m(a1, a2, iters=4, test_mode=True)
        for k, f in enumerate(flows):
            assert_close(f, g["caseA_flows_iters4"][k], 1e-4, 1e-5, f"M flow {k}")
        assert_close(final, g["caseA_final_iters4"], 1e-4, 1e-5, "M final iters4")
        # exactly MonST3R's call
        assert_close(searaft_m(a1, a2, iters=20, test_mode=True)[1], g["caseA_final_iters20"], 5e-4, 1e-5, "M it20")
        assert InputPadder(b1.shape).pad_amounts == list(g["caseB_pad"])
        flows_b, final_b = searaft_m(b1, b2, iters=20, test_mode=True)
        assert final_b.shape == (1, 2, 131, 153)
        assert_close(final_b, g["caseB_final_iters20"], 5e-4, 1e-5, "M case B it20")
        for k in range(5):
            assert_close(flows_b[k], g["caseB_flows_iters4"][k], 1e-4, 1e-5, f"M case B flow {k}")


def test_searaft_m_golden_info_nf_and_intermediates(searaft_m, m_golden):
    g, model = m_golden, searaft_m
    a1, a2 = nchw(g["caseA_img1"]), nchw(g["caseA_img2"])
    tol = dict(atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        out = model(a1, a2, iters=4)
        assert_close(out["info"][0], g["caseA_info_initial"], 1e-5, what="info initial")
        assert_close(out["info"][-1], g["caseA_info_final_iters4"], 1e-5, what="info final")
        assert_close(out["nf"][-1], g["caseA_nf_final_iters4"], 1e-4, what="nf")
        assert_close(out["final"], g["caseA_final_iters4"], 1e-4, 1e-5, "final")

        x1, x2 = 2 * (a1 / 255) - 1, 2 * (a2 / 255) - 1
        raw = model.cnet(torch.cat([x1, x2], dim=1))
        assert_close(raw, g["caseA_cnet_raw"], what="cnet", **tol)
        c = model.init_conv(raw)
        assert_close(c, g["caseA_cnet_after_init_conv"], what="init_conv", **tol)
        net, ctx = c[:, :128], c[:, 128:]
        head = model.flow_head(net)
        assert_close(head, g["caseA_flow_head_initial"], what="flow_head", **tol)
        f1, f2 = model.fnet(x1), model.fnet(x2)
        assert_close(f1, g["caseA_fmap1"], what="fmap1", **tol)
        assert_close(f2, g["caseA_fmap2"], what="fmap2", **tol)
        corr_fn = CorrPyramid(f1, f2, 4, 4)
        assert_close(corr_fn(torch.from_numpy(g["corrtest_coords"])), g["corrtest_corr"], 2e-5, what="corr lookup")
        flow8 = head[:, :2]
        corr1 = corr_fn(coords_grid(2, 16, 20, torch.device("cpu")) + flow8)
        assert_close(corr1, g["caseA_corr_iter1"], 2e-5, what="corr iter1")
        assert_close(model.update_block(net, ctx, corr1, flow8), g["caseA_net_after_update1"], what="update", **tol)


def test_raft_classic_golden(golden):
    manifest = load_json(golden("flow", "raft_classic_manifest.json"))
    checks = load_json(golden("flow", "raft_classic_recipe_checksums.json"))
    r = np.load(golden("flow", "raft_classic_golden.npz"))
    m = np.load(golden("flow", "searaft_M_golden.npz"))
    model = RAFT()
    model.load_state_dict(to_torch_sd(recipe_weights(manifest, checks["seed"], checks["gain"])), strict=True)
    model.eval()
    a1, a2 = nchw(m["caseA_img1"]), nchw(m["caseA_img2"])
    with torch.no_grad():
        for iters, tol in ((4, 1e-4), (20, 5e-4)):
            low, up = model(a1, a2, iters=iters, test_mode=True)
            assert_close(low, r[f"caseA_low_iters{iters}"], tol, what=f"RAFT low {iters}")
            assert_close(up, r[f"caseA_up_iters{iters}"], tol, what=f"RAFT up {iters}")


def test_flow_validity_mask_golden(golden):
    g = np.load(golden("flow", "occmask_golden.npz"))
    f12, f21, th = torch.from_numpy(g["flow_1_2"]), torch.from_numpy(g["flow_2_1"]), float(g["th"])
    v1, v2 = flow_validity_mask(f12, f21, th), flow_validity_mask(f21, f12, th)
    assert v1.dtype == torch.bool and v1.shape == (3, 1, 40, 56)
    np.testing.assert_array_equal(v1.numpy(), g["valid_1"])
    np.testing.assert_array_equal(v2.numpy(), g["valid_2"])
    inbounds, inconsistency = flow_consistency_terms(f12, f21)
    np.testing.assert_array_equal(inbounds.numpy(), g["inbounds_1"])
    assert_close(inconsistency, g["inconsistency_1"], 1e-5, what="inconsistency")
    # no stale grid: another size right after works and matches the per-size result
    small = flow_validity_mask(f12[:, :, :20, :30], f21[:, :, :20, :30])
    assert small.shape == (3, 1, 20, 30)
    # the corrected variant rejects batch 1's (4, -4) residual region that the signed sum accepts
    l2 = flow_validity_mask(f12, f21, th, consistency="l2")
    assert (v1[1] & ~l2[1]).sum() > 0


def test_sam2_frame_preprocessing_golden(golden):
    g = np.load(golden("flow", "sam2_frames_golden.npz"))
    out, h, w = sam2_adapter.preprocess_video_tensor(torch.from_numpy(g["frames01"]), int(g["image_size"]))
    assert (h, w) == tuple(g["video_hw"])
    assert_close(out, g["out"], 1e-5, what="sam2 frames")


# ------------------------------------------------------------------------------------ pair flow end to end
def test_compute_pair_flows_random_weights_end_to_end():
    torch.manual_seed(0)
    model = SEARAFT(small_config()).eval()
    imgs = synthetic_images(3)
    h, w = imgs.shape[1:3]
    edges = [(0, 1), (1, 2), (0, 2), (1, 0), (2, 1), (2, 0)]
    flow_ij, flow_ji, valid_i, valid_j = compute_pair_flows(model, imgs, edges, chunk_size=4, iters=3)
    for t in (flow_ij, flow_ji):
        assert t.shape == (6, 2, h, w) and t.dtype == torch.float32 and t.device.type == "cpu"
        assert torch.isfinite(t).all() and not t.requires_grad
    for t in (valid_i, valid_j):
        assert t.shape == (6, 1, h, w) and t.dtype == torch.bool and t.device.type == "cpu"
    # semantics: edge e's forward flow is net(img_i*255, img_j*255)[1]; reversed edges swap the roles
    with torch.no_grad():
        direct = model(imgs[[0]].permute(0, 3, 1, 2) * 255, imgs[[1]].permute(0, 3, 1, 2) * 255, iters=3,
                       test_mode=True)[1]
    torch.testing.assert_close(flow_ij[0:1], direct, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flow_ij[:3], flow_ji[3:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(valid_i, flow_validity_mask(flow_ij, flow_ji))
    torch.testing.assert_close(valid_j, flow_validity_mask(flow_ji, flow_ij))
    # chunking does not change results; a list of HWC numpy arrays is accepted too
    again = compute_pair_flows(model, [im.numpy() for im in imgs], edges[:2], chunk_size=1, iters=3)
    torch.testing.assert_close(again[0], flow_ij[:2], atol=1e-4, rtol=1e-4)
    empty = compute_pair_flows(model, imgs, [], iters=3)
    assert empty[0].shape == (0, 2, h, w) and empty[2].dtype == torch.bool


def test_pair_flows_and_validity_on_synthetic_generator_scene():
    """The synthetic generator's frames run end to end; its ground-truth flows pass the forward-backward check
    where they are valid (not occluded, in view)."""
    synthetic = pytest.importorskip("monst3r.datasets.synthetic")
    scene = synthetic.SyntheticScene(width=144, height=128, num_frames=3, seed=1)
    imgs = torch.from_numpy(np.stack([scene.frame(i).rgb for i in range(3)])).float() / 255  # [N, H, W, 3]
    edges = [(0, 1), (1, 2), (1, 0), (2, 1)]
    torch.manual_seed(0)
    out = compute_pair_flows(SEARAFT(small_config()).eval(), imgs, edges, iters=2)
    assert [tuple(t.shape) for t in out] == [(4, 2, 128, 144)] * 2 + [(4, 1, 128, 144)] * 2
    assert all(t.device.type == "cpu" for t in out) and torch.isfinite(out[0]).all()

    fwd, valid = scene.flow(0, 2)
    bwd, _ = scene.flow(2, 0)
    mask = flow_validity_mask(torch.from_numpy(fwd).permute(2, 0, 1)[None],
                              torch.from_numpy(bwd).permute(2, 0, 1)[None])[0, 0].numpy()
    assert (mask == valid).mean() > 0.9
    assert mask[valid].mean() > 0.95


def test_flow_networks_reject_too_small_images():
    imgs = torch.zeros(1, 3, 64, 96)
    with pytest.raises(Monst3rInputError, match="at least"):
        SEARAFT(small_config()).eval()(imgs, imgs, iters=1, test_mode=True)
    with torch.no_grad(), pytest.raises(Monst3rInputError, match="at least"):
        RAFT().eval()(imgs, imgs, iters=1, test_mode=True)


# ------------------------------------------------------------------------------------ loading checkpoints
def test_missing_flow_weights_clear_error(tmp_path, monkeypatch):
    with pytest.raises(Monst3rInputError) as info:
        load_flow_model(tmp_path / "Tartan-C-T-TSKH-spring540x960-M.pth", "cpu")
    msg = str(info.value)
    assert "data/download_ckpt.sh" in msg and "--flow_loss_weight 0" in msg and "\n" not in msg
    if not (REPO_ROOT / "third_party/RAFT/models").exists():  # else real weights are here and would load
        monkeypatch.chdir(tmp_path)
        for name in ("searaft", "raft", None):
            with pytest.raises(Monst3rInputError, match="download_ckpt.sh"):
                load_flow_model(name)


def test_architecture_chosen_from_keys_not_path(tmp_path, golden):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    raft_sd = {"module." + k: v for k, v in RAFT().state_dict().items()}  # release files carry "module."
    raft_path = tmp_path / "Models-M" / "MMM.pth"
    raft_path.parent.mkdir()
    torch.save(raft_sd, raft_path)
    loaded = load_flow_model(raft_path, "cpu")
    assert isinstance(loaded, RAFT) and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())

    tiny = load_flow_model(golden("flow", "searaft_tiny_weights.safetensors"))
    sd = {"module." + k: v.clone() for k, v in tiny.state_dict().items()}
    sea_path = tmp_path / "flow.pth"
    torch.save(sd, sea_path)
    assert isinstance(load_flow_model(sea_path, "cpu"), SEARAFT)

    # safetensors exports drop one twin of each bn3 / downsample.1 alias: filled back
    dedup = {k: v.clone().contiguous() for k, v in tiny.state_dict().items() if ".downsample.1." not in k}
    st_path = tmp_path / "flow.safetensors"
    save_file(dedup, str(st_path))
    reloaded = load_flow_model(st_path)
    for k, v in tiny.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v)

    broken = dict(sd)
    broken.pop("module.init_conv.bias")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(Monst3rInputError, match="init_conv.bias"):
        load_flow_model(tmp_path / "broken.pth")
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(Monst3rInputError, match="unrecognised"):
        load_flow_model(tmp_path / "other.pth")


# ------------------------------------------------------------------------------------ SAM2 refinement
def _masks(n: int = 4, h: int = 16, w: int = 20) -> list:
    masks = []
    for k in range(n):
        m = torch.zeros(h, w, dtype=torch.bool)
        m[2 + k:6 + k, 3 * k:3 * k + 4] = True
        masks.append(m)
    return masks


def _record_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [w for w in caught if "SAM2" in str(w.message)]


def test_sam2_missing_package_skips_with_one_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "sam2", None)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    masks = _masks()
    imgs = torch.rand(4, 16, 20, 3)
    result, caught = _record_warnings(lambda: refine_motion_masks_with_sam2(imgs, masks))
    assert len(caught) == 1 and "SAM2 mask refinement skipped" in str(caught[0].message)
    assert isinstance(result, Sam2Refinement) and result.skipped and "sam2" in result.reason
    assert result.masks is masks and result.sam2_masks is None


def test_sam2_missing_checkpoint_or_too_few_frames_skips(monkeypatch, tmp_path):
    monkeypatch.setattr(sam2_adapter, "sam2_unavailable_reason", lambda: None)
    masks = torch.stack(_masks())
    result, caught = _record_warnings(
        lambda: refine_motion_masks_with_sam2(torch.rand(4, 16, 20, 3), masks, checkpoint=tmp_path / "none.pt"))
    assert len(caught) == 1 and result.skipped and "checkpoint not found" in result.reason
    assert result.masks is masks
    result, caught = _record_warnings(lambda: refine_motion_masks_with_sam2(torch.rand(1, 16, 20, 3), masks[:1]))
    assert len(caught) == 1 and result.skipped and "2 frames" in result.reason


class FakePredictor:
    """Mimics SAM2.1's video predictor: a prompted frame returns its own prompt (logits +-10); every other frame
    returns the union of its prompted neighbours' masks."""

    def __init__(self) -> None:
        self.calls: list = []
        self.prompts: dict = {}

    def init_state(self, video_path):
        assert isinstance(video_path, torch.Tensor) and video_path.dim() == 4 and video_path.shape[1] == 3
        assert 0 <= float(video_path.min()) and float(video_path.max()) <= 1
        self.calls.append(("init", video_path.shape[0]))
        return {"n": video_path.shape[0], "hw": video_path.shape[-2:]}

    def reset_state(self, state):
        self.calls.append(("reset",))
        self.prompts = {}

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        assert obj_id == 1 and mask.dtype == torch.bool and mask.shape == state["hw"]
        self.calls.append(("mask", frame_idx))
        self.prompts[frame_idx] = mask.clone()

    def propagate_in_video(self, state, start_frame_idx=0):
        assert start_frame_idx == 0
        h, w = state["hw"]
        for k in range(state["n"]):
            if k in self.prompts:
                m = self.prompts[k]
            else:
                m = torch.zeros(h, w, dtype=torch.bool)
                for j in (k - 1, k + 1):
                    if j in self.prompts:
                        m = m | self.prompts[j]
            yield k, [1], torch.where(m, 10.0, -10.0)[None, None]


@pytest.mark.parametrize("as_tensor", [False, True])
def test_sam2_two_pass_procedure_with_fake_predictor(as_tensor):
    masks = _masks(5)
    inp = torch.stack(masks) if as_tensor else masks
    fake = FakePredictor()
    imgs = torch.rand(5, 16, 20, 3)
    result, caught = _record_warnings(lambda: refine_motion_masks_with_sam2(imgs, inp, predictor=fake))
    assert not caught and not result.skipped and result.reason is None
    assert fake.calls == [("init", 5), ("reset",), ("mask", 1), ("mask", 3), ("reset",), ("mask", 0), ("mask", 2),
                          ("mask", 4)]
    for k in range(5):
        # each frame's SAM2 mask comes only from its neighbours' prompts, never from its own
        expected = torch.zeros_like(masks[k])
        for j in (k - 1, k + 1):
            if 0 <= j < 5:
                expected |= masks[j]
        torch.testing.assert_close(result.sam2_masks[k], expected)
        torch.testing.assert_close(result.masks[k], masks[k] | expected)
    assert isinstance(result.masks, torch.Tensor) == as_tensor


# ------------------------------------------------------------------------------------ download script
def test_download_script_is_safe_and_parses(tmp_path):
    script = REPO_ROOT / "data" / "download_ckpt.sh"
    text = script.read_text()
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    for needle in ("Tartan-C-T-TSKH-spring540x960-M.pth", "raft-sintel.pth", "sam2.1_hiera_large.pt",
                   "MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt.pth"):
        assert needle in text
    out = subprocess.run(["bash", str(script), "--dry-run"], check=True, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "MONST3R_CKPT_ROOT": str(tmp_path)})
    assert "third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.pth" in out.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
