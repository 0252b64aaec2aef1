"""Typed settings (monst3r.config): the flag -> global_aligner mapping of the demo and of the pose evaluation, each
written once (ReconstructConfig.from_demo_args / from_eval_args)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import demo
from monst3r.config import AlignerConfig, ReconstructConfig
from monst3r.errors import Monst3rInputError
from monst3r.eval.args import eval_defaults


def demo_cfg(*argv: str) -> ReconstructConfig:
    return ReconstructConfig.from_demo_args(demo.get_parser().parse_args(["--input", "x", *argv]))


def test_demo_defaults_map_to_the_original_optimizer_options():
    cfg = demo_cfg()
    assert cfg.aligner.aligner_kwargs() == dict(
        shared_focal=True, temporal_smoothing_weight=0.01, translation_weight=1.0, flow_loss_weight=0.01,
        flow_loss_start_epoch=0.1, flow_loss_thre=25, use_self_mask=True, num_total_iter=300, batchify=True,
        window_wise=False, window_size=100, window_overlap_ratio=0.5, sam2_mask_refine=True)
    assert cfg.aligner.alignment_kwargs() == dict(init="mst", niter=300, schedule="linear", lr=0.01)
    assert cfg.pair_graph(10) == "swinstride-5-noncyclic"
    assert (cfg.batch_size, cfg.torch_dtype, cfg.shard_inference, cfg.fail_on_divergence) == (16, None, True, False)


def test_demo_modes_and_masks():
    cfg = demo_cfg("--window_wise", "--use_gt_mask", "--dtype", "bf16", "--no_sam2", "--flow_loss_weight", "0")
    kw = cfg.aligner.aligner_kwargs()
    assert (kw["window_wise"], kw["batchify"], kw["use_self_mask"], kw["sam2_mask_refine"]) == (True, False, False,
                                                                                                 False)
    assert cfg.torch_dtype == torch.bfloat16 and cfg.aligner.flow_loss_weight == 0
    chunk = cfg.with_aligner(window_size=7)
    assert chunk.aligner.window_size == 7 and cfg.aligner.window_size == 100  # frozen: a copy changes
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 3  # type: ignore[misc]
    with pytest.raises(Monst3rInputError, match="out of range"):
        demo_cfg("--scenegraph_type", "oneref", "--refid", "9").pair_graph(4)


def test_eval_defaults_map_to_the_evaluation_optimizer_options():
    cfg = ReconstructConfig.from_eval_args(eval_defaults(), sintel_flow=True)
    kw = cfg.aligner.aligner_kwargs()
    assert kw["sintel_ckpt"] is True and cfg.aligner.flow_weights == "raft-sintel"
    assert "batchify" not in kw and kw["window_wise"] is False  # batchify: the optimizer's default
    assert kw["num_total_iter"] == cfg.aligner.niter
    assert (cfg.batch_size, cfg.shard_inference, cfg.clean_pair_viewer, cfg.fail_on_divergence) == (1, False, True,
                                                                                                   True)
    assert ReconstructConfig.from_eval_args(eval_defaults()).aligner.flow_weights == "searaft"
    assert AlignerConfig().aligner_kwargs() == dict(window_wise=False, flow_loss_weight=0.0, num_total_iter=300)


def test_eval_settings_are_built_once_from_the_flags():
    """PoseEvalConfig / DepthEvalConfig.from_args: the one reading of the evaluation flags (frozen dataclasses travel
    below the entry points); the flow network per dataset through with_sintel_flow, as from_eval_args."""
    from monst3r.eval.config import DepthEvalConfig, PoseEvalConfig

    args = eval_defaults(["--eval_dataset", "tum", "--pose_eval_stride", "2", "--seq_list", "a", "b", "--no_crop",
                          "--use_gt_mask", "--silent"], eval_data_root="", eval_max_seqs=3)
    cfg = PoseEvalConfig.from_args(args)
    assert (cfg.eval_dataset, cfg.stride, cfg.seq_list, cfg.crop, cfg.use_gt_mask, cfg.verbose) == (
        "tum", 2, ("a", "b"), False, True, False)
    assert (cfg.eval_data_root, cfg.max_seqs, cfg.image_size, cfg.device, cfg.pretrained) == (".", 3, 512, "auto",
                                                                                              None)
    assert cfg.reconstruct == ReconstructConfig.from_eval_args(args)
    assert cfg.flow_loss_weight == 0.01
    for sintel in (False, True):
        assert cfg.reconstruct.with_sintel_flow(sintel) == ReconstructConfig.from_eval_args(args, sintel_flow=sintel)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stride = 1  # type: ignore[misc]
    depth = DepthEvalConfig.from_args(args)
    assert (depth.eval_dataset, depth.seq_list, depth.crop, depth.output_dir) == ("tum", ("a", "b"), False,
                                                                                 args.output_dir)
