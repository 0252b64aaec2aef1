"""Training of MonST3R / DUSt3R networks (spec training.md 2-5, 8, 11): the epoch loop, evaluation on
the test sets and :func:`train` (arguments: :mod:`.args`, checkpoints: :mod:`.checkpoints`, meters: :mod:`.meters`,
processes: :mod:`monst3r.runtime`).

Run with ``python launch.py --mode=train ...`` (one process) or ``torchrun --nproc_per_node=N launch.py
--mode=train ...`` (DistributedDataParallel; NCCL on CUDA, Gloo on CPU). Library entry: :func:`train(args)`.

Batches: the loaders yield ``[view1, view2]`` (dicts of collated tensors, see
:mod:`monst3r.datasets.base.base_stereo_view_dataset`); every step symmetrises the batch
(``[a0, b0, a1, b1, ...]`` / ``[b0, a0, ...]``), runs ``model(view1, view2)`` and the criterion
``(loss scalar, details)``.

Checkpoints (``checkpoint-last/best/<epoch>/best_pose/final.pth``, their keys and how they load): see
:mod:`monst3r.training.checkpoints`.

Differences from the original (see spec 13): ``--test_criterion`` falls back to ``--train_criterion``;
``--num_save_visual 0`` disables visualisations; ``--eval_only`` evaluates once and returns; loss scaling is on
only for fp16 autocast on CUDA (fp32/bf16 steps with non-finite gradients are no longer skipped silently — a
non-finite loss stops training as before); the global RNGs are re-seeded at the start of every training epoch
from ``(seed, rank, epoch)`` so that a run resumed at an epoch boundary reproduces the uninterrupted run; strings
are parsed safely (no ``eval``); ``--pretrained`` loads strictly unless ``--pretrained_strict 0``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from monst3r.errors import Monst3rInputError
from monst3r.model import model_from_string
from monst3r.optim_factory import LossScaler, adjust_learning_rate, build_optimizer, derive_lr
from monst3r.runtime import (all_reduce_mean, barrier, epoch_seed, get_rank, get_world_size, init_distributed_mode,
                             is_main_process, resolve_rank_device, seed_everything)
from monst3r.training.checkpoints import load_pretrained, load_training_state, save_checkpoint, save_final_model
from monst3r.training.meters import MetricLogger

log = logging.getLogger(__name__)

#: View keys that stay on the host (as the original's ``loss_of_one_batch``).
_HOST_KEYS = {"depthmap", "dataset", "label", "instance", "idx", "true_shape", "rng"}



# ============================================================================================== one batch
def _to_device(views: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    out = {}
    for k, v in views.items():
        if k not in _HOST_KEYS and isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
        out[k] = v
    return out


def symmetrize_batch(view1: Dict[str, Any], view2: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Interleave the two views: tensors of equal ndim become ``[a0, b0, a1, b1, ...]`` /
    ``[b0, a0, b1, a1, ...]``; list values are interleaved element-wise (``idx``: per component)."""
    from monst3r.inference import make_batch_symmetric
    from monst3r.utils.pair_batches import interleave

    return make_batch_symmetric(view1, view2, interleave)


def _amp_dtype(args: argparse.Namespace) -> Optional[torch.dtype]:
    if not getattr(args, "amp", 0):
        return None
    return torch.bfloat16 if getattr(args, "amp_dtype", "fp16") == "bf16" else torch.float16


def forward_batch(batch: Sequence[Dict[str, Any]], model: torch.nn.Module, criterion: Optional[torch.nn.Module],
                  device: torch.device, symmetrize: bool = True, amp_dtype: Optional[torch.dtype] = None
                  ) -> Dict[str, Any]:
    """Move a collated ``[view1, view2]`` batch to ``device`` (except host-only keys), symmetrise it, run the
    model (under autocast when ``amp_dtype``) and the criterion (in full precision). Gradients flow (unlike
    :func:`monst3r.inference.loss_of_one_batch`). Returns ``{view1, view2, pred1, pred2, loss}`` with
    ``loss = (scalar, details)`` or None."""
    view1, view2 = (_to_device(v, device) for v in batch)
    if symmetrize:
        view1, view2 = symmetrize_batch(view1, view2)
    if amp_dtype is not None:
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            pred1, pred2 = model(view1, view2)
    else:
        pred1, pred2 = model(view1, view2)
    loss = None
    if criterion is not None:
        with torch.autocast(device_type=device.type, enabled=False):
            pred1f = {k: v.float() if torch.is_tensor(v) else v for k, v in pred1.items()}
            pred2f = {k: v.float() if torch.is_tensor(v) else v for k, v in pred2.items()}
            loss = criterion(view1, view2, pred1f, pred2f)
    return dict(view1=view1, view2=view2, pred1=pred1, pred2=pred2, loss=loss)


# ============================================================================================== visualisation
def save_visuals(result: Dict[str, Any], out_dir: Path) -> None:
    """GT and predicted point clouds of the first batch element as ``<dataset>_<label>_<i1>_<i2>_{gt,pred}.glb``
    (GT in world coordinates, prediction in camera 1's frame; valid pixels only)."""
    try:
        import trimesh
    except ImportError:
        return
    v1, v2, p1, p2 = result["view1"], result["view2"], result["pred1"], result["pred2"]

    def rgb(view):
        return ((view["img"][0].detach().float().cpu().permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255)

    m1 = v1["valid_mask"][0].cpu().numpy().astype(bool)
    m2 = v2["valid_mask"][0].cpu().numpy().astype(bool)
    cols = np.concatenate([rgb(v1)[m1], rgb(v2)[m2]]).astype(np.uint8)
    name = f"{v1['dataset'][0]}_{v1['label'][0]}_{v1['instance'][0]}_{v2['instance'][0]}".replace("/", "-")
    out_dir.mkdir(parents=True, exist_ok=True)
    for tag, a, b in (("gt", v1["pts3d"], v2["pts3d"]), ("pred", p1["pts3d"], p2["pts3d_in_other_view"])):
        pts = np.concatenate([a[0].detach().float().cpu().numpy()[m1], b[0].detach().float().cpu().numpy()[m2]])
        if len(pts):
            trimesh.PointCloud(pts, colors=cols).export(str(out_dir / f"{name}_{tag}.glb"))


# ============================================================================================== epochs
def _set_epoch(loader: Iterable, epoch: int) -> None:
    for obj in (getattr(loader, "dataset", None), getattr(loader, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


@torch.enable_grad()
def train_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module, data_loader: Iterable,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int, loss_scaler: LossScaler,
                    args: argparse.Namespace, log_writer: Any = None) -> Dict[str, float]:
    """One training epoch (spec 8.4). Returns ``{meter: global average}`` (synchronised across processes)."""
    model.train(True)
    seed_everything(epoch_seed(args.seed, get_rank(), epoch))
    _set_epoch(data_loader, epoch)
    metrics = MetricLogger()
    accum_iter = max(1, int(args.accum_iter))
    amp_dtype = _amp_dtype(args)
    n_iter = len(data_loader)
    optimizer.zero_grad()
    params = [p for p in model.parameters() if p.requires_grad]
    iter_log = Path(args.output_dir) / "log_iters.jsonl" if is_main_process() else None
    show = is_main_process() and not args.silent
    bar = tqdm(data_loader, total=n_iter, desc=f"Epoch {epoch}", disable=not show, dynamic_ncols=True, leave=False)
    for step, batch in enumerate(bar):
        epoch_f = epoch + step / n_iter
        if step % accum_iter == 0:
            adjust_learning_rate(optimizer, epoch_f, args)
        result = forward_batch(batch, model, criterion, device, symmetrize=True, amp_dtype=amp_dtype)
        loss, details = result["loss"]
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at epoch {epoch} step {step}; stopping training "
                                     f"(details: {details})")
        if args.num_save_visual > 0 and is_main_process() and step % max(n_iter // args.num_save_visual, 1) == 0:
            save_visuals(result, Path(args.output_dir) / str(epoch))
        update = (step + 1) % accum_iter == 0
        loss_scaler(loss / accum_iter, optimizer, parameters=params, update_grad=update)
        if update:
            optimizer.zero_grad()
        del result, loss
        lr = optimizer.param_groups[0]["lr"]
        metrics.update(epoch=epoch_f, lr=lr, loss=loss_value, **details)
        if iter_log is not None:
            with open(iter_log, "a") as f:
                f.write(json.dumps({"epoch": epoch, "step": step, "loss": loss_value, "lr": lr}) + "\n")
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if update and ((step + 1) // accum_iter) % max(1, args.print_freq) == 0:
            loss_avg = all_reduce_mean(loss_value)
            if is_main_process():
                log.info("Epoch: [%d]  [%d/%d]  lr: %.6f  %s", epoch, step, n_iter, lr, metrics)
            if log_writer is not None:
                x = int(epoch_f * 1000)
                log_writer.add_scalar("train_loss", loss_avg, x)
                log_writer.add_scalar("train_lr", lr, x)
                log_writer.add_scalar("train_iter", x, x)
                for k, v in details.items():
                    log_writer.add_scalar("train_" + k, v, x)
    bar.close()
    metrics.synchronize_between_processes()
    stats = {k: m.global_avg for k, m in metrics.meters.items()}
    log.info("Epoch %d averaged stats: %s", epoch, stats)
    return stats


@torch.no_grad()
def test_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module, data_loader: Iterable,
                   device: torch.device, epoch: int, args: argparse.Namespace, log_writer: Any = None,
                   prefix: str = "test") -> Dict[str, float]:
    """Evaluate one test set (spec 8.5): ``{k_avg (global), k_med (this process, lower median)}``."""
    model.eval()
    metrics = MetricLogger(window_size=9 ** 9)
    _set_epoch(data_loader, 0 if args.fixed_eval_set else epoch)
    amp_dtype = _amp_dtype(args)
    n_iter = len(data_loader)
    show = is_main_process() and not args.silent
    for step, batch in enumerate(tqdm(data_loader, total=n_iter, desc=f"Test {prefix}", disable=not show,
                                      dynamic_ncols=True, leave=False)):
        result = forward_batch(batch, model, criterion, device, symmetrize=True, amp_dtype=amp_dtype)
        loss, details = result["loss"]
        metrics.update(loss=float(loss), **details)
        if args.num_save_visual > 0 and is_main_process() and step % max(n_iter // args.num_save_visual, 1) == 0:
            save_visuals(result, Path(args.output_dir) / str(epoch))
    metrics.synchronize_between_processes()
    out = {}
    for k, m in metrics.meters.items():
        out[f"{k}_avg"] = m.global_avg
        out[f"{k}_med"] = m.median
    log.info("Test %s epoch %d: %s", prefix, epoch, out)
    if log_writer is not None:
        for k, v in out.items():
            log_writer.add_scalar(f"{prefix}_{k}", v, 1000 * epoch)
    return out


def write_log_stats(output_dir: str, epoch: int, train_stats: Dict[str, float],
                    test_stats: Dict[str, Dict[str, float]], log_writer: Any = None) -> None:
    """Append one JSON line to ``<output_dir>/log.txt`` (rank 0): train stats, test stats per set and, for sets
    sharing a name before ``_stride``, their mean (``<base>_stride_mean_<k>``)."""
    if not is_main_process():
        return
    if log_writer is not None:
        log_writer.flush()
    stats: Dict[str, Any] = {"epoch": epoch, **{f"train_{k}": v for k, v in train_stats.items()}}
    groups: Dict[str, List[Dict[str, float]]] = defaultdict(list)
    for name, st in test_stats.items():
        stats.update({f"{name}_{k}": v for k, v in st.items()})
        if "_stride" in name:
            groups[name.split("_stride")[0]].append(st)
    for base, sts in groups.items():
        if len(sts) >= 2:
            for k in sts[0]:
                stats[f"{base}_stride_mean_{k}"] = float(np.mean([s[k] for s in sts if k in s]))
    with open(os.path.join(output_dir, "log.txt"), "a") as f:
        f.write(json.dumps(stats) + "\n")


# ============================================================================================== train()
def _log_writer(output_dir: str) -> Any:
    if not is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=output_dir)


def _run_pose_eval(args: argparse.Namespace, model: torch.nn.Module, device: torch.device, epoch: int
                   ) -> Optional[float]:
    """In-training pose evaluation: :func:`monst3r.eval.pose.evaluate_in_training` (returns the mean ATE).

    Imported here, inside the function: training depends on evaluation only at this call (evaluation imports
    :mod:`monst3r.training.args` / :mod:`monst3r.training.checkpoints`, never this module)."""
    from monst3r.eval.pose import evaluate_in_training

    return evaluate_in_training(args, model, device, os.path.join(args.output_dir, str(epoch)))


def _setup_run(args: argparse.Namespace) -> torch.device:
    """Process group, wandb, output folder, auto-resume from ``checkpoint-last.pth``, the logged arguments, the
    device and the seeds (``seed + rank``). Returns this process's device."""
    init_distributed_mode(args)
    rank = get_rank()
    if args.wandb and is_main_process():
        try:
            import wandb

            wandb.init(name=os.path.basename(os.path.normpath(args.output_dir)), project="dust3r",
                       config=vars(args), sync_tensorboard=True, dir=args.output_dir)
        except ImportError:
            log.warning("--wandb: wandb is not installed; logging to wandb is off")
    os.makedirs(args.output_dir, exist_ok=True)
    last = os.path.join(args.output_dir, "checkpoint-last.pth")
    if args.resume is None and os.path.isfile(last) and not args.eval_only:
        args.resume = last
    log.info("output_dir: %s", args.output_dir)
    for k, v in sorted(vars(args).items()):
        log.info("%s: %s", k, v)

    device = resolve_rank_device(args)
    seed_everything(args.seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
    return device


def _build_model(args: argparse.Namespace, device: torch.device) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """``--model`` on ``device``, initialised from ``--pretrained`` unless resuming; wrapped in DDP when
    distributed. Returns ``(model, model_without_ddp)``."""
    log.info("Building model: %s", " ".join(args.model.split()))
    model = model_from_string(args.model).to(device)
    if args.pretrained and not args.resume:
        load_pretrained(model, args.pretrained, strict=bool(args.pretrained_strict))
    model_without_ddp = model
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, static_graph=True)
    return model, model_without_ddp


def _build_data(args: argparse.Namespace) -> Tuple[Any, Dict[str, Any]]:
    """``(train loader, {name: test loader})`` from ``--train_dataset`` / ``--test_dataset``."""
    from monst3r.datasets.loader import build_test_loaders, get_data_loader

    log.info("Building train dataset %s", args.train_dataset)
    train_loader = get_data_loader(args.train_dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                                   pin_mem=True, shuffle=True, drop_last=True)
    if len(train_loader) == 0:
        raise Monst3rInputError(f"the training set is smaller than one batch of {args.batch_size} pairs per "
                                f"process x {get_world_size()} processes: use more pairs (N @ ...) or a smaller "
                                "--batch_size")
    test_loaders = {}
    if args.test_dataset and args.test_dataset.strip() not in ("", "[None]", "None"):
        log.info("Building test datasets %s", args.test_dataset)
        test_loaders = build_test_loaders(args.test_dataset, batch_size=args.batch_size,
                                          num_workers=args.num_workers)
    return train_loader, test_loaders


def _build_criteria(args: argparse.Namespace, device: torch.device) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """``(train criterion, test criterion)``; the test criterion falls back to the train criterion."""
    from monst3r.utils.parsing import parse_criterion

    train_criterion = parse_criterion(args.train_criterion).to(device)
    test_criterion = parse_criterion(args.test_criterion or args.train_criterion).to(device)
    log.info("train criterion: %s; test criterion: %s", train_criterion, test_criterion)
    return train_criterion, test_criterion


def _build_optimizer(args: argparse.Namespace, model_without_ddp: torch.nn.Module, device: torch.device
                     ) -> Tuple[torch.optim.Optimizer, LossScaler]:
    """AdamW over the parameter groups (``args.lr`` derived from ``--blr`` when unset) and the loss scaler
    (enabled for fp16 autocast on CUDA only)."""
    eff_batch = args.batch_size * args.accum_iter * get_world_size()
    if args.lr is None:
        args.lr = derive_lr(args.blr, args.batch_size, args.accum_iter, get_world_size())
    log.info("base lr: %.2e; actual lr: %.2e; accumulate grad iterations: %d; effective batch size: %d",
             args.lr * 256 / eff_batch, args.lr, args.accum_iter, eff_batch)
    optimizer = build_optimizer(model_without_ddp, args.lr, args.weight_decay)
    amp_dtype = _amp_dtype(args)
    loss_scaler = LossScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")
    return optimizer, loss_scaler


class _RunState:
    """What the epoch loop carries: the model (and its DDP wrapper), criteria, loaders, optimizer, scaler, the
    best test loss / pose ATE so far and the latest statistics."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)
        self.train_stats: Dict[str, float] = {}
        self.test_stats: Dict[str, Dict[str, float]] = {}


def _evaluate(args: argparse.Namespace, st: _RunState, epoch: int) -> Tuple[bool, bool]:
    """Test sets (best median loss) and, every ``--pose_eval_freq`` epochs, the pose evaluation (best ATE).
    Returns ``(new best test loss, new best pose ATE)``."""
    new_best = new_pose_best = False
    for name, loader in st.test_loaders.items():
        stats = test_one_epoch(st.model, st.test_criterion, loader, st.device, epoch, args, st.log_writer,
                               prefix=name)
        st.test_stats[name] = stats
        if stats["loss_med"] < st.best_so_far:
            st.best_so_far, new_best = stats["loss_med"], True
    if args.pose_eval_freq > 0 and (epoch % args.pose_eval_freq == 0 or args.eval_only):
        ate = _run_pose_eval(args, st.model_without_ddp, st.device, epoch)
        if ate is not None and ate < st.best_pose_ate_sofar:
            st.best_pose_ate_sofar, new_pose_best = ate, True
    barrier()
    return new_best, new_pose_best


def _save_epoch_checkpoints(args: argparse.Namespace, st: _RunState, epoch: int, new_best: bool,
                            new_pose_best: bool) -> None:
    """``checkpoint-<epoch>`` every ``--keep_freq``, ``-best`` / ``-best_pose`` on improvement, ``-last`` every
    ``--save_freq`` (and at the end when nothing else was written). The checkpoints hold epoch ``epoch - 1``."""
    saved = False
    ck = dict(args=args, epoch=epoch - 1, model=st.model_without_ddp, optimizer=st.optimizer,
              loss_scaler=st.loss_scaler, best_so_far=st.best_so_far, best_pose_ate_sofar=st.best_pose_ate_sofar)
    if args.keep_freq and epoch % args.keep_freq == 0:
        save_checkpoint(args.output_dir, str(epoch), **ck)
        saved = True
    if new_best:
        save_checkpoint(args.output_dir, "best", **ck)
        saved = True
    if new_pose_best and args.save_best_pose:
        save_checkpoint(args.output_dir, "best_pose", **ck)
    if (args.save_freq and epoch % args.save_freq == 0) or (epoch == args.epochs and not saved):
        save_checkpoint(args.output_dir, "last", **ck)


def _epoch_loop(args: argparse.Namespace, st: _RunState, start_epoch: int) -> Tuple[int, bool]:
    """Epochs ``start_epoch .. args.epochs``: evaluate, log, save, stop, train. Returns ``(last epoch,
    interrupted by --stop_after_epochs)``."""
    epoch = start_epoch
    for epoch in range(start_epoch, args.epochs + 1):
        new_best = new_pose_best = False
        if (epoch > start_epoch and args.eval_freq > 0 and epoch % args.eval_freq == 0) or args.eval_only:
            new_best, new_pose_best = _evaluate(args, st, epoch)
        write_log_stats(args.output_dir, epoch, st.train_stats, st.test_stats, st.log_writer)
        if args.eval_only:
            break
        if epoch > start_epoch:
            _save_epoch_checkpoints(args, st, epoch, new_best, new_pose_best)
        if epoch >= args.epochs:
            break
        if args.stop_after_epochs is not None and epoch - start_epoch >= args.stop_after_epochs:
            log.info("stopping after %d epochs as requested (--stop_after_epochs); resume with --resume",
                     args.stop_after_epochs)
            return epoch, True
        st.train_stats = train_one_epoch(st.model, st.train_criterion, st.train_loader, st.optimizer, st.device,
                                         epoch, st.loss_scaler, args, st.log_writer)
    return epoch, False


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Full training run (spec 3-5). Returns ``{'best_so_far', 'epoch', 'output_dir', 'test_stats',
    'train_stats'}``."""
    device = _setup_run(args)
    model, model_without_ddp = _build_model(args, device)
    train_loader, test_loaders = _build_data(args)
    train_criterion, test_criterion = _build_criteria(args, device)
    optimizer, loss_scaler = _build_optimizer(args, model_without_ddp, device)

    start_epoch, best_so_far, best_pose_ate_sofar = 0, math.inf, math.inf
    if args.resume:
        start_epoch, best_so_far, best_pose_ate_sofar = load_training_state(
            args.resume, model_without_ddp, optimizer, loss_scaler)
    st = _RunState(model=model, model_without_ddp=model_without_ddp, device=device, train_loader=train_loader,
                   test_loaders=test_loaders, train_criterion=train_criterion, test_criterion=test_criterion,
                   optimizer=optimizer, loss_scaler=loss_scaler, best_so_far=best_so_far,
                   best_pose_ate_sofar=best_pose_ate_sofar, log_writer=_log_writer(args.output_dir))

    log.info("Start training for %d epochs", args.epochs)
    t0 = time.time()
    epoch, interrupted = _epoch_loop(args, st, start_epoch)
    log.info("Training time %s", str(datetime.timedelta(seconds=int(time.time() - t0))))
    if not interrupted and not args.eval_only:
        save_final_model(args.output_dir, args, model_without_ddp, st.best_so_far)
    if st.log_writer is not None:
        st.log_writer.close()
    barrier()
    if args.distributed and dist.is_initialized():
        dist.destroy_process_group()
    return {"best_so_far": st.best_so_far, "epoch": epoch, "output_dir": args.output_dir,
            "test_stats": st.test_stats, "train_stats": st.train_stats}
