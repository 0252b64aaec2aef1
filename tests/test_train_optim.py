"""Learning-rate schedule, parameter groups, arguments and loss scaler (spec training.md 2, 8.1-8.3)."""
import argparse
import json

import pytest
import torch

from monst3r.optim_factory import (LossScaler, adjust_learning_rate, build_optimizer, derive_lr,
                                   get_parameter_groups, lr_at)
from monst3r.training import DEFAULT_MODEL, DEFAULT_TRAIN_CRITERION, get_args_parser


def _rel(a, b):
    return abs(a - b) <= 1e-12 * max(abs(b), 1e-30)


def _optimizer_with_two_groups():
    p1, p2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, 2))
    return torch.optim.AdamW([{"params": [p1], "lr_scale": 1.0}, {"params": [p2]}], lr=0.0)


def test_lr_schedule_matches_golden(golden):
    spec = json.loads(golden("train", "lr_schedule.json").read_text())
    for key in ("readme_command", "parser_defaults"):
        a = spec[key]["args"]
        args = argparse.Namespace(lr=a["lr"], min_lr=a["min_lr"], warmup_epochs=a["warmup_epochs"],
                                  epochs=a["epochs"])
        if key == "parser_defaults":
            assert _rel(derive_lr(a["blr"], a["batch_size"], a["accum_iter"], a["world_size"]), a["lr"])
        opt = _optimizer_with_two_groups()
        for row in spec[key]["table"]:
            lr = adjust_learning_rate(opt, row["epoch_f"], args)
            assert _rel(lr, row["lr"]), (key, row)
            assert all(_rel(g["lr"], r) for g, r in zip(opt.param_groups, row["group_lrs"]))
    rc = spec["readme_command"]
    a = rc["args"]
    n_iter = a["iters_per_epoch_per_gpu"]
    assert a["train_pairs"] // (a["batch_size"] * a["world_size"]) == n_iter
    for row in rc["per_step"]:
        epoch_f = row["epoch"] + row["data_iter_step"] / n_iter
        assert row["data_iter_step"] % a["accum_iter"] == 0
        assert _rel(epoch_f, row["epoch_f"]) or abs(epoch_f - row["epoch_f"]) < 1e-12
        assert _rel(lr_at(epoch_f, a["lr"], a["min_lr"], a["warmup_epochs"], a["epochs"]), row["lr"]), row


def test_parameter_groups_match_golden(golden):
    from monst3r.model import model_from_string

    spec = json.loads(golden("train", "param_groups.json").read_text())
    assert spec["model_string"] == DEFAULT_MODEL
    with torch.device("meta"):  # 571 M parameters: no memory, no init time
        model = model_from_string(spec["model_string"])
    groups = get_parameter_groups(model, 0.05)
    assert len(groups) == len(spec["groups"])
    for got, ref in zip(groups, spec["groups"]):
        assert got["weight_decay"] == ref["weight_decay"] and got["lr_scale"] == ref["lr_scale"]
        assert got["param_names"] == ref["names"]
        assert len(got["params"]) == ref["n_tensors"]
        assert sum(p.numel() for p in got["params"]) == ref["numel"]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == spec["frozen"]["names"]
    assert sum(p.numel() for p in model.parameters()) == spec["total_numel"]


def test_optimizer_is_adamw_with_original_betas():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    assert opt.param_groups[0]["param_names"] == ["0.bias", "1.weight", "1.bias"]


def test_parser_defaults_are_the_originals():
    args = get_args_parser().parse_args([])
    expected = dict(pretrained=None, train_criterion=DEFAULT_TRAIN_CRITERION, test_criterion=None,
                    train_dataset="[None]", test_dataset="[None]", seed=0, batch_size=64, accum_iter=1, epochs=800,
                    weight_decay=0.05, lr=None, blr=1.5e-4, min_lr=0.0, warmup_epochs=40, amp=0,
                    cudnn_benchmark=False, eval_only=False, fixed_eval_set=False, resume=None, num_workers=8,
                    world_size=1, local_rank=-1, dist_url="env://", eval_freq=1, save_freq=1, keep_freq=5,
                    print_freq=20, wandb=False, num_save_visual=1, mode="train", pose_eval_freq=0,
                    pose_eval_stride=1, scene_graph_type="swinstride-5-noncyclic", save_best_pose=False, n_iter=300,
                    save_pose_qualitative=False, temporal_smoothing_weight=0.01, not_shared_focal=False,
                    use_gt_focal=False, pose_schedule="linear", flow_loss_weight=0.01, flow_loss_fn="smooth_l1",
                    use_gt_mask=False, motion_mask_thre=0.35, sam2_mask_refine=False, flow_loss_start_epoch=0.1,
                    flow_loss_thre=20, pxl_thresh=50.0, depth_regularize_weight=0.0, translation_weight=1,
                    silent=False, full_seq=False, seq_list=None, eval_dataset="sintel", no_crop=False,
                    output_dir="./results/tmp")
    for k, v in expected.items():
        assert getattr(args, k) == v, k
    assert args.model == DEFAULT_MODEL
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--eval_dataset", "imagenet"])


def test_readme_command_parses():
    from launch import build_parser

    argv = [
        "--mode=train",
        "--train_dataset=10_000 @ PointOdysseyDUSt3R(dset='train', z_far=80, dataset_location='data/point_odyssey', "
        "S=2, aug_crop=16, resolution=[(512, 288), (512, 384), (512, 336)], transform=ColorJitter, "
        "strides=[1,2,3,4,5,6,7,8,9], dist_type='linear_1_2', aug_focal=0.9)+ 4_000 @ Waymo(ROOT='data/waymo_processed',"
        " pairs_npz_name='waymo_pairs_video.npz', aug_crop=16, resolution=[(512, 288)], transform=ColorJitter, "
        "aug_focal=0.9)",
        "--test_dataset=1000 @ SintelDUSt3R(dset='final', z_far=80, S=2, strides=[1,2,3,4,5,6,7,8,9], "
        "resolution=[(512, 224)], seed=777)",
        "--train_criterion=ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)",
        "--test_criterion=Regr3D_ScaleShiftInv(L21, gt_scale=True)",
        "--pretrained=checkpoints/DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth",
        "--lr=0.00005", "--min_lr=1e-06", "--warmup_epochs=3", "--epochs=50", "--batch_size=4", "--accum_iter=4",
        "--save_freq=3", "--keep_freq=5", "--eval_freq=1",
        "--output_dir=results/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt",
    ]
    args = build_parser().parse_args(argv)
    assert args.lr == 5e-5 and args.accum_iter == 4 and args.train_dataset.startswith("10_000 @")


@torch.enable_grad()  # another test module disables autograd globally at import
def test_loss_scaler_disabled_steps_and_reports_norm():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = LossScaler("cpu", enabled=False)
    norm = scaler((p * 2).sum(), opt, parameters=[p])
    assert torch.allclose(p.detach(), torch.full((3,), 0.8))
    assert float(norm) == pytest.approx(2 * 3 ** 0.5)
    assert scaler((p * 2).sum(), opt, parameters=[p], update_grad=False) is None
    scaler.load_state_dict(scaler.state_dict())
