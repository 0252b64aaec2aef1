"""SAM2 mask refinement through the REAL PyPI ``sam2`` package (``sam2==1.1.0``), not a fake predictor.

The video predictor is built from the package's own SAM2.1 hiera-tiny config with random weights (no download) and
the model input reduced to 128 px through a config override, then the project's refinement path
(``monst3r.cloud_opt.sam2_refine.refine_motion_masks_with_sam2`` -> ``third_party.sam2_adapter``) runs on a few tiny
frames. Random weights predict arbitrary masks, so the checks are on the API contract: the calls the adapter
makes are accepted, tensors come back at the frames' size as bool, the union rule holds, a prompted frame returns
its own prompt (so height/width are not swapped), checkpoints in sam2's format load, and the CPU float32 memory
hook is what makes CPU runs work. Skipped when ``sam2`` is not installed, except under ``CI`` where it fails.
"""
import os
import warnings

import numpy as np
import pytest
import torch

from third_party import sam2_adapter

if sam2_adapter.sam2_unavailable_reason() is not None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {sam2_adapter.sam2_unavailable_reason()} (make test installs requirements-test.txt)",
                    pytrace=False)
    pytest.skip(sam2_adapter.sam2_unavailable_reason(), allow_module_level=True)

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"  # the smallest config the package ships
SMALL = ["++model.image_size=128"]  # the model input (1024 by default); RoPE tables are recomputed for it
N, H, W = 4, 20, 36  # non-square on purpose


def _build(checkpoint=None, seed=0, **kw):
    torch.manual_seed(seed)
    return sam2_adapter.build_video_predictor(CONFIG, checkpoint, "cpu", hydra_overrides=SMALL, **kw)


@pytest.fixture(scope="module")
def predictor():
    torch.set_num_threads(1)
    return _build()


def _video():
    g = torch.Generator().manual_seed(3)
    imgs = torch.rand(N, H, W, 3, generator=g)  # the optimizer's image store: [N, H, W, 3] in [0, 1]
    masks = torch.zeros(N, H, W, dtype=torch.bool)
    for k in range(N):
        masks[k, 4:14, 6 + 3 * k:20 + 3 * k] = True  # a moving box
    return imgs, masks


def test_real_predictor_is_built_from_the_package_config(predictor):
    from sam2.sam2_video_predictor_legacy import SAM2VideoPredictor

    assert isinstance(predictor, SAM2VideoPredictor)  # the pre-rewrite class MonST3R's copy is based on
    assert predictor.image_size == 128 and predictor.device.type == "cpu" and not predictor.training
    assert predictor.memory_attention._forward_pre_hooks_with_kwargs  # the CPU float32 memory hook


@pytest.mark.parametrize("as_tensor", [True, False])
def test_refinement_runs_through_the_real_predictor(predictor, as_tensor, caplog):
    from monst3r.cloud_opt.sam2_refine import refine_motion_masks_with_sam2

    imgs, masks = _video()
    inp = masks if as_tensor else list(masks)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO", logger=sam2_adapter.__name__):
        warnings.simplefilter("always")
        result = refine_motion_masks_with_sam2(imgs, inp, predictor=predictor, device="cpu")
    assert not result.skipped and result.reason is None
    assert not [w for w in caught if "post-processing" in str(w.message)]  # sam2's hole-filling notice: one log line
    assert any("sam2._C" in r.getMessage() for r in caplog.records)
    sam2_masks = torch.stack(list(result.sam2_masks))
    union = torch.stack(list(result.masks))
    assert isinstance(result.masks, torch.Tensor) == as_tensor
    assert sam2_masks.shape == (N, H, W) and sam2_masks.dtype == torch.bool and union.dtype == torch.bool
    assert torch.equal(union, masks | sam2_masks)


@pytest.mark.slow
def test_two_pass_refine_is_deterministic_and_matches_a_loaded_checkpoint(predictor, tmp_path):
    """sam2's checkpoint format (``{"model": state_dict}``) loads strictly through the adapter's build, and the
    loaded predictor gives exactly the same masks as the in-memory one."""
    imgs, masks = _video()
    frames = imgs.permute(0, 3, 1, 2).contiguous()
    first = sam2_adapter.two_pass_refine(predictor, frames, list(masks))
    assert [m.shape for m in first] == [(H, W)] * N and all(m.dtype == bool for m in first)
    torch.save({"model": predictor.state_dict()}, tmp_path / "tiny.pt")
    loaded = _build(tmp_path / "tiny.pt", seed=123)  # different random init, overwritten by the checkpoint
    again = sam2_adapter.two_pass_refine(loaded, frames, list(masks))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_prompted_frame_returns_its_prompt_at_the_video_size(predictor):
    """SAM2.1 returns a mask prompt as the output of its own frame (why the refinement uses two passes); through the
    adapter's tensor video loader that output must come back at (H, W), matching the prompt."""
    imgs, masks = _video()
    frames = imgs.permute(0, 3, 1, 2).contiguous()
    with sam2_adapter.tensor_video_loader():
        state = predictor.init_state(video_path=frames)
    assert (state["video_height"], state["video_width"]) == (H, W) and state["num_frames"] == N
    assert tuple(state["images"].shape) == (N, 3, 128, 128)
    predictor.reset_state(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor.add_new_mask(state, frame_idx=2, obj_id=1, mask=masks[2])
        out = {k: logits for k, _, logits in predictor.propagate_in_video(state, start_frame_idx=0)}
    assert sorted(out) == list(range(N))  # start_frame_idx=0: every frame, as the refinement asks
    got = out[2][0, 0] > 0
    iou = (got & masks[2]).sum() / (got | masks[2]).sum()
    assert got.shape == (H, W) and iou > 0.8, float(iou)


def test_cpu_needs_the_float32_memory_hook():
    """sam2 1.1.0 stores memory features in bfloat16; without the adapter's hook a CPU run fails."""
    bare = _build()
    bare.memory_attention._forward_pre_hooks.clear()
    bare.memory_attention._forward_pre_hooks_with_kwargs.clear()
    imgs, masks = _video()
    with pytest.raises(RuntimeError, match="dtype"):
        sam2_adapter.two_pass_refine(bare, imgs.permute(0, 3, 1, 2).contiguous(), list(masks))
