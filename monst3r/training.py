"""Training of MonST3R / DUSt3R networks (spec training.md 2-5, 8, 11): arguments, distributed set-up, the epoch
loop, evaluation on the test sets, checkpoints and resume.

Run with ``python launch.py --mode=train ...`` (one process) or ``torchrun --nproc_per_node=N launch.py
--mode=train ...`` (DistributedDataParallel; NCCL on CUDA, Gloo on CPU). Library entry: :func:`train(args)`.

Batches: the loaders yield ``[view1, view2]`` (dicts of collated tensors, see
:mod:`monst3r.datasets.base.base_stereo_view_dataset`); every step symmetrises the batch
(``[a0, b0, a1, b1, ...]`` / ``[b0, a0, ...]``), runs ``model(view1, view2)`` and the criterion
``(loss scalar, details)``.

Checkpoints (rank 0, written atomically: temporary file + ``os.replace``): ``checkpoint-last.pth``,
``checkpoint-best.pth``, ``checkpoint-<epoch>.pth`` (and ``checkpoint-best_pose.pth``) with keys ``model``,
``optimizer``, ``scaler``, ``args`` (an ``argparse.Namespace`` of plain values), ``epoch`` (last COMPLETED
epoch), ``best_so_far``, ``best_pose_ate_sofar``; ``checkpoint-final.pth`` (``args``, ``model``, ``epoch`` =
``args.epochs``, ``best_so_far``). All load with ``torch.load(weights_only=True)`` once ``argparse.Namespace`` is
allow-listed (as :func:`monst3r.model.load_model` does).

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
import random
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from monst3r.errors import Monst3rInputError
from monst3r.model import CheckpointError, check_state_dict, model_from_string
from monst3r.utils.files import sniff_file_kind
from monst3r.optim_factory import LossScaler, adjust_learning_rate, build_optimizer, derive_lr

log = logging.getLogger(__name__)

#: The original's default ``--model`` string (with its runs of spaces from line continuations).
DEFAULT_MODEL = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
                 "                        img_size=(512, 512), head_type='dpt', output_mode='pts3d', "
                 "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf),                         "
                 "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, "
                 "dec_num_heads=12, freeze='encoder')")
DEFAULT_TRAIN_CRITERION = "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
EVAL_DATASETS = ["davis", "kitti", "bonn", "scannet", "tum", "nyu", "sintel"]

#: View keys that stay on the host (as the original's ``loss_of_one_batch``).
_HOST_KEYS = {"depthmap", "dataset", "label", "instance", "idx", "true_shape", "rng"}


# ============================================================================================== arguments
#: The values of ``--mode``.
MODES = ("train", "eval_pose", "eval_depth")


def get_args_parser() -> argparse.ArgumentParser:
    """The shared parser of ``launch.py`` (training and evaluation flags; original names and defaults).

    Built with ``add_help=False`` like the original; ``launch.py`` adds ``-h``. Flags beyond the original:
    ``--device``, ``--amp_dtype``, ``--pretrained_strict``, ``--stop_after_epochs``.
    """
    p = argparse.ArgumentParser("MonST3R training", add_help=False)
    # model and criteria
    p.add_argument("--model", default=DEFAULT_MODEL, type=str, help="model constructor string (parsed safely)")
    p.add_argument("--pretrained", default=None, help="checkpoint to initialise from (ignored when resuming)")
    p.add_argument("--pretrained_strict", default=1, type=int, choices=[0, 1],
                   help="1: every key of --pretrained must match the model; 0: partial init (logs missing keys)")
    p.add_argument("--train_criterion", default=DEFAULT_TRAIN_CRITERION, type=str, help="train criterion")
    p.add_argument("--test_criterion", default=None, type=str, help="test criterion (default: train criterion)")
    # datasets
    p.add_argument("--train_dataset", default="[None]", type=str, help="training dataset expression")
    p.add_argument("--test_dataset", default="[None]", type=str, help="test dataset expression ('+'-separated)")
    # training
    p.add_argument("--seed", default=0, type=int, help="random seed (per process: seed + rank)")
    p.add_argument("--batch_size", default=64, type=int, help="pairs per process before symmetrisation")
    p.add_argument("--accum_iter", default=1, type=int, help="gradient accumulation steps")
    p.add_argument("--epochs", default=800, type=int, help="epochs to train")
    p.add_argument("--weight_decay", type=float, default=0.05, help="weight decay")
    p.add_argument("--lr", type=float, default=None, metavar="LR", help="absolute learning rate")
    p.add_argument("--blr", type=float, default=1.5e-4, metavar="LR",
                   help="base lr: lr = blr * batch_size * accum_iter * world_size / 256")
    p.add_argument("--min_lr", type=float, default=0.0, metavar="LR", help="floor of the cosine schedule")
    p.add_argument("--warmup_epochs", type=int, default=40, metavar="N", help="epochs of linear warm-up")
    p.add_argument("--amp", type=int, default=0, choices=[0, 1], help="mixed precision for the forward pass")
    p.add_argument("--amp_dtype", type=str, default="fp16", choices=["fp16", "bf16"],
                   help="autocast dtype with --amp 1 (fp16: the original's; bf16 needs no loss scaling)")
    p.add_argument("--cudnn_benchmark", action="store_true", default=False, help="set cudnn.benchmark")
    p.add_argument("--eval_only", action="store_true", default=False, help="evaluate the test sets once and exit")
    p.add_argument("--fixed_eval_set", action="store_true", default=False, help="test sets always use epoch 0")
    p.add_argument("--resume", default=None, type=str, help="checkpoint to resume (default: auto-resume)")
    p.add_argument("--stop_after_epochs", default=None, type=int,
                   help="stop (as if interrupted) after training this many epochs in this run; resume later")
    # distributed / device
    p.add_argument("--num_workers", default=8, type=int, help="DataLoader workers")
    p.add_argument("--world_size", default=1, type=int, help="number of processes (set by torchrun)")
    p.add_argument("--local_rank", default=-1, type=int, help="unused (LOCAL_RANK is read from the environment)")
    p.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    p.add_argument("--device", default="auto", type=str,
                   help="auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda, cuda:N, mps")
    # output
    p.add_argument("--eval_freq", type=int, default=1, help="test every N epochs")
    p.add_argument("--save_freq", default=1, type=int, help="write checkpoint-last.pth every N epochs")
    p.add_argument("--keep_freq", default=5, type=int, help="write checkpoint-<epoch>.pth every N epochs")
    p.add_argument("--print_freq", default=20, type=int, help="iterations between console lines")
    p.add_argument("--wandb", action="store_true", default=False, help="log to Weights & Biases")
    p.add_argument("--num_save_visual", default=1, type=int, help="GLB visualisations per epoch (0: none)")
    # evaluation (evaluation.md; shared with --mode=eval_pose / eval_depth)
    p.add_argument("--mode", default="train", type=str, choices=MODES,
                   help="train / eval_pose / eval_depth (the original trained on any other value; we refuse it)")
    p.add_argument("--pose_eval_freq", default=0, type=int, help="pose evaluation every N epochs (0: never)")
    p.add_argument("--pose_eval_stride", default=1, type=int, help="frame stride for pose evaluation")
    p.add_argument("--scene_graph_type", default="swinstride-5-noncyclic", type=str, help="scene graph")
    p.add_argument("--save_best_pose", action="store_true", default=False, help="save checkpoint-best_pose.pth")
    p.add_argument("--n_iter", default=300, type=int, help="global-alignment iterations")
    p.add_argument("--save_pose_qualitative", action="store_true", default=False, help="GLB per sequence")
    p.add_argument("--temporal_smoothing_weight", default=0.01, type=float, help="temporal smoothing weight")
    p.add_argument("--not_shared_focal", action="store_true", default=False, help="per-frame focal lengths")
    p.add_argument("--use_gt_focal", action="store_true", default=False, help="use ground-truth focal lengths")
    p.add_argument("--pose_schedule", default="linear", type=str, help="pose learning-rate schedule")
    p.add_argument("--flow_loss_weight", default=0.01, type=float, help="flow loss weight")
    p.add_argument("--flow_loss_fn", default="smooth_l1", type=str, help="flow loss function")
    p.add_argument("--use_gt_mask", action="store_true", default=False, help="use ground-truth dynamic masks")
    p.add_argument("--motion_mask_thre", default=0.35, type=float, help="motion mask threshold")
    p.add_argument("--sam2_mask_refine", action="store_true", default=False, help="SAM2 mask refinement")
    p.add_argument("--flow_loss_start_epoch", default=0.1, type=float, help="start of the flow loss")
    p.add_argument("--flow_loss_thre", default=20, type=float, help="flow loss threshold")
    p.add_argument("--pxl_thresh", default=50.0, type=float, help="pixel threshold")
    p.add_argument("--depth_regularize_weight", default=0.0, type=float, help="depth regularisation weight")
    p.add_argument("--translation_weight", default=1, type=float, help="translation weight")
    p.add_argument("--silent", action="store_true", default=False, help="no progress bars")
    p.add_argument("--full_seq", action="store_true", default=False, help="use every sequence")
    p.add_argument("--seq_list", nargs="+", default=None, help="sequences to evaluate")
    p.add_argument("--eval_dataset", type=str, default="sintel", choices=EVAL_DATASETS, help="evaluation dataset")
    p.add_argument("--no_crop", action="store_true", default=False, help="resize instead of crop")
    p.add_argument("--output_dir", default="./results/tmp", type=str, help="output folder")
    return p


def check_launch_args(args: argparse.Namespace) -> None:
    """Refuse ``launch.py`` / ``python -m monst3r.eval.*`` values that can only be mistakes (the original crashed
    later with a traceback, or silently did nothing, e.g. ``--epochs -1``). Raises Monst3rInputError."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise Monst3rInputError(msg)

    for name in ("batch_size", "accum_iter", "epochs", "eval_freq", "save_freq", "keep_freq", "print_freq",
                 "n_iter", "pose_eval_stride", "world_size"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 1, f"--{name} {v}: must be at least 1")
    for name in ("num_workers", "warmup_epochs", "pose_eval_freq", "num_save_visual"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 0, f"--{name} {v}: must be 0 or more")
    for name in ("lr", "blr", "min_lr", "weight_decay", "flow_loss_weight", "temporal_smoothing_weight",
                 "translation_weight", "depth_regularize_weight", "motion_mask_thre", "flow_loss_thre",
                 "pxl_thresh", "flow_loss_start_epoch"):
        v = getattr(args, name, None)
        if v is not None:
            need(math.isfinite(v) and v >= 0, f"--{name} {v}: must be a finite number >= 0")
    for name in ("stop_after_epochs", "eval_max_seqs", "eval_image_size"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 1, f"--{name} {v}: must be at least 1")
    device = getattr(args, "device", "auto") or "auto"
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise Monst3rInputError(f"--device {device}: not a device; use auto, cpu, cuda, cuda:N or mps"
                                    ) from None
    if getattr(args, "mode", None) == "train":
        need(bool(args.train_dataset) and args.train_dataset.strip() not in ("[None]", "None"),
             "--mode=train needs --train_dataset, e.g. \"10_000 @ PointOdysseyDUSt3R(dset='train', "
             "dataset_location='data/point_odyssey', S=2, resolution=[(512, 288)])\" (see data/prepare_training.md)")
    for name in ("pretrained", "resume"):
        v = getattr(args, name, None)
        if v and not str(v).startswith("https://"):
            need(os.path.exists(v), f"--{name} {v}: no such file or folder")
    # the strings, parsed (nothing built) before the model is allocated and the datasets are read
    from monst3r.model import check_model_config
    from monst3r.utils.parsing import parse_model_string

    if getattr(args, "model", None):
        check_model_config(parse_model_string(args.model)[1])
    if getattr(args, "mode", None) == "train":
        from monst3r.datasets.loader import check_dataset_expression
        from monst3r.losses import CRITERIA, CRITERION_NAMES
        from monst3r.utils.parsing import check_expression

        check_dataset_expression(args.train_dataset)
        if args.test_dataset and args.test_dataset.strip() not in ("", "[None]", "None"):
            check_dataset_expression(args.test_dataset)
        for name in ("train_criterion", "test_criterion"):
            if getattr(args, name, None):
                check_expression(getattr(args, name), CRITERIA, CRITERION_NAMES, name.replace("_", " "))


# ============================================================================================== distributed
def init_distributed_mode(args: argparse.Namespace) -> None:
    """torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) -> process group (NCCL on CUDA, Gloo
    otherwise; timeout 3600 s) and ``args.distributed/rank/world_size/gpu``; single process otherwise."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        args.rank = int(os.environ["RANK"])
        args.world_size = int(os.environ["WORLD_SIZE"])
        args.gpu = int(os.environ.get("LOCAL_RANK", 0))
    else:
        args.rank, args.world_size, args.gpu = 0, 1, 0
        args.distributed = False
        return
    args.distributed = True
    use_cuda = _wants_cuda(args.device)
    if use_cuda:
        torch.cuda.set_device(args.gpu)
    args.dist_backend = "nccl" if use_cuda else "gloo"
    log.info("| distributed init (rank %d, world %d, backend %s): %s", args.rank, args.world_size,
             args.dist_backend, args.dist_url)
    extra = {"device_id": torch.device("cuda", args.gpu)} if use_cuda else {}
    dist.init_process_group(backend=args.dist_backend, init_method=args.dist_url, world_size=args.world_size,
                            rank=args.rank, timeout=datetime.timedelta(seconds=3600), **extra)
    dist.barrier()


def _wants_cuda(device: str) -> bool:
    return (device == "auto" and torch.cuda.is_available()) or str(device).startswith("cuda")


def resolve_device(args: argparse.Namespace) -> torch.device:
    """``--device`` (auto -> cuda:LOCAL_RANK when available, else cpu); plain ``cuda`` gets the local rank."""
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        dev = f"cuda:{getattr(args, 'gpu', 0)}"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise Monst3rInputError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(dev)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: float) -> float:
    """Mean of a python float over the processes."""
    if get_world_size() == 1:
        return x
    t = torch.tensor(x, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return float(t) / get_world_size()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """Deterministic per (seed, rank, epoch) seed used to re-seed the global RNGs at each training epoch."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(epoch)]).generate_state(1)[0])


# ============================================================================================== meters
class SmoothedValue:
    """Window of recent values plus global count/total. ``median`` is torch's LOWER median of the window."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})"):
        self.deque: deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self) -> None:
        """All-reduce count and total only (the window stays per process)."""
        if get_world_size() == 1:
            return
        t = torch.tensor([self.count, self.total], dtype=torch.float64, device=_comm_device())
        dist.barrier()
        dist.all_reduce(t)
        self.count, self.total = int(t[0].item()), float(t[1].item())

    @property
    def median(self) -> float:
        return float(torch.tensor(list(self.deque)).median().item()) if self.deque else float("nan")

    @property
    def avg(self) -> float:
        return float(torch.tensor(list(self.deque), dtype=torch.float32).mean().item()) if self.deque else float("nan")

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else float("nan")

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg, value=self.value)


class MetricLogger:
    """Named :class:`SmoothedValue` meters."""

    def __init__(self, delimiter: str = "  ", window_size: int = 20):
        self.meters: Dict[str, SmoothedValue] = defaultdict(lambda: SmoothedValue(window_size))
        self.delimiter = delimiter

    def update(self, **kwargs: float) -> None:
        for k, v in kwargs.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters[k].update(float(v))

    def synchronize_between_processes(self) -> None:
        for m in self.meters.values():
            m.synchronize_between_processes()

    def __str__(self) -> str:
        return self.delimiter.join(f"{k}: {m}" for k, m in self.meters.items())


# ============================================================================================== checkpoints
def read_checkpoint(path: str) -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allow-listed (URLs: hub download with hash
    check). Errors are :class:`CheckpointError` with a one-line reason."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            if str(path).startswith("https://"):
                return torch.hub.load_state_dict_from_url(str(path), map_location="cpu", check_hash=True,
                                                          weights_only=True)
            if not os.path.isfile(path):
                raise CheckpointError(f"checkpoint not found: {path}")
            kind = sniff_file_kind(path)
            if kind is not None:
                raise CheckpointError(f"{path} is not a MonST3R checkpoint: it is {kind}; give a .pth written by "
                                      "training or the official checkpoint")
            return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling / zip / IO errors all mean an unusable file
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}{': ' + first if first else ''}): "
                              "truncated, not a PyTorch checkpoint, or holding objects other than plain weights "
                              "(never executed)") from None


def _atomic_save(obj: Dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plain_args(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` holding only values ``weights_only`` loading accepts (others become strings)."""
    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return type(v)(plain(x) for x in v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)
    return argparse.Namespace(**{k: plain(v) for k, v in vars(args).items()})


def save_checkpoint(output_dir: str, tag: str, args: argparse.Namespace, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, loss_scaler: LossScaler, best_so_far: float,
                    best_pose_ate_sofar: float = math.inf) -> Optional[Path]:
    """Write ``<output_dir>/checkpoint-<tag>.pth`` (rank 0 only; atomic). ``epoch`` = last completed epoch."""
    if not is_main_process():
        return None
    path = Path(output_dir) / f"checkpoint-{tag}.pth"
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": int(epoch),
        "args": _plain_args(args),
        "scaler": loss_scaler.state_dict(),
        "best_so_far": float(best_so_far),
        "best_pose_ate_sofar": float(best_pose_ate_sofar),
    }
    _atomic_save(state, path)
    log.info("saved %s (epoch %d)", path, epoch)
    return path


def save_final_model(output_dir: str, args: argparse.Namespace, model: torch.nn.Module,
                     best_so_far: float) -> Optional[Path]:
    """``checkpoint-final.pth``: ``args``, CPU ``model``, ``epoch = args.epochs``, ``best_so_far``."""
    if not is_main_process():
        return None
    path = Path(output_dir) / "checkpoint-final.pth"
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save({"args": _plain_args(args), "model": sd, "epoch": int(args.epochs),
                  "best_so_far": float(best_so_far)}, path)
    log.info("saved %s", path)
    return path


def load_training_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        loss_scaler: LossScaler) -> Tuple[int, float, float]:
    """Resume from ``path``: model (strict), optimizer, scaler. Returns ``(start_epoch, best_so_far,
    best_pose_ate_sofar)`` with ``start_epoch = ckpt['epoch'] + 1``."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry)")
    model.load_state_dict(check_state_dict(ckpt["model"], Path(path)), strict=True)
    log.info("resume checkpoint %s", path)
    start_epoch = 0
    if "optimizer" in ckpt and "epoch" in ckpt:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch = int(ckpt["epoch"]) + 1
            if ckpt.get("scaler"):
                loss_scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"--resume {path}: its optimizer state does not fit this model/optimizer "
                                  f"({type(exc).__name__}: {str(exc)[:160]}); resume with the same --model, or "
                                  "start from it with --pretrained instead") from None
        log.info("with optimizer state; resuming at epoch %d", start_epoch)
    best = float(ckpt.get("best_so_far", math.inf) if ckpt.get("best_so_far") is not None else math.inf)
    best_pose = float(ckpt.get("best_pose_ate_sofar", math.inf)
                      if ckpt.get("best_pose_ate_sofar") is not None else math.inf)
    return start_epoch, best, best_pose


def load_pretrained(model: torch.nn.Module, path: str, strict: bool = True) -> None:
    """Initialise ``model`` from a DUSt3R/MonST3R ``.pth`` (``ckpt['model']`` or a bare state dict) or a Hugging
    Face folder / ``.safetensors`` file. The model's own ``load_state_dict`` fills ``dec_blocks2`` from
    ``dec_blocks`` when absent and accepts the DPT alias names; shape mismatches are always errors."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        from safetensors.torch import load_file

        f = p / "model.safetensors" if p.is_dir() else p
        if not f.is_file():
            raise CheckpointError(f"--pretrained {path}: no model.safetensors found")
        try:
            sd = load_file(str(f))
        except Exception as exc:  # noqa: BLE001 - SafetensorError / OSError: an unusable file
            raise CheckpointError(f"--pretrained {f} is not a MonST3R checkpoint: cannot read it as safetensors "
                                  f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    else:
        ckpt = read_checkpoint(str(p))
        sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    sd = check_state_dict(sd, p)
    res = model.load_state_dict(sd, strict=strict)
    if not strict:
        log.warning("pretrained %s: missing keys %s; unexpected keys %s", path, list(res.missing_keys)[:20],
                    list(res.unexpected_keys)[:20])
    log.info("initialised the model from %s", path)


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
    from monst3r.utils.misc import interleave

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
    """In-training pose evaluation via ``monst3r.eval.pose.evaluate_in_training(args, model, device, save_dir)``
    (returns the mean ATE) when that function exists; otherwise a warning and None."""
    try:
        from monst3r.eval import pose as pose_eval  # type: ignore[attr-defined]
    except ImportError:
        pose_eval = None
    fn = getattr(pose_eval, "evaluate_in_training", None)
    if fn is None:
        log.warning("--pose_eval_freq: pose evaluation during training is not available in this build; skipped")
        return None
    return fn(args, model, device, os.path.join(args.output_dir, str(epoch)))


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Full training run (spec 3-5). Returns ``{'best_so_far', 'epoch', 'output_dir'}``."""
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

    device = resolve_device(args)
    seed_everything(args.seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True

    log.info("Building model: %s", " ".join(args.model.split()))
    model = model_from_string(args.model).to(device)
    if args.pretrained and not args.resume:
        load_pretrained(model, args.pretrained, strict=bool(args.pretrained_strict))
    model_without_ddp = model
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True, static_graph=True)

    from monst3r.datasets.loader import build_test_loaders, get_data_loader
    from monst3r.utils.parsing import parse_criterion

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

    train_criterion = parse_criterion(args.train_criterion).to(device)
    test_criterion = parse_criterion(args.test_criterion or args.train_criterion).to(device)
    log.info("train criterion: %s; test criterion: %s", train_criterion, test_criterion)

    eff_batch = args.batch_size * args.accum_iter * get_world_size()
    if args.lr is None:
        args.lr = derive_lr(args.blr, args.batch_size, args.accum_iter, get_world_size())
    log.info("base lr: %.2e; actual lr: %.2e; accumulate grad iterations: %d; effective batch size: %d",
             args.lr * 256 / eff_batch, args.lr, args.accum_iter, eff_batch)
    optimizer = build_optimizer(model_without_ddp, args.lr, args.weight_decay)
    amp_dtype = _amp_dtype(args)
    loss_scaler = LossScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")

    start_epoch, best_so_far, best_pose_ate_sofar = 0, math.inf, math.inf
    if args.resume:
        start_epoch, best_so_far, best_pose_ate_sofar = load_training_state(
            args.resume, model_without_ddp, optimizer, loss_scaler)
    log_writer = _log_writer(args.output_dir)

    log.info("Start training for %d epochs", args.epochs)
    t0 = time.time()
    train_stats: Dict[str, float] = {}
    test_stats: Dict[str, Dict[str, float]] = {}
    interrupted = False
    epoch = start_epoch
    for epoch in range(start_epoch, args.epochs + 1):
        new_best = new_pose_best = False
        if (epoch > start_epoch and args.eval_freq > 0 and epoch % args.eval_freq == 0) or args.eval_only:
            for name, loader in test_loaders.items():
                st = test_one_epoch(model, test_criterion, loader, device, epoch, args, log_writer, prefix=name)
                test_stats[name] = st
                if st["loss_med"] < best_so_far:
                    best_so_far, new_best = st["loss_med"], True
            if args.pose_eval_freq > 0 and (epoch % args.pose_eval_freq == 0 or args.eval_only):
                ate = _run_pose_eval(args, model_without_ddp, device, epoch)
                if ate is not None and ate < best_pose_ate_sofar:
                    best_pose_ate_sofar, new_pose_best = ate, True
            barrier()
        write_log_stats(args.output_dir, epoch, train_stats, test_stats, log_writer)
        if args.eval_only:
            break
        if epoch > start_epoch:
            saved = False
            ck = dict(args=args, epoch=epoch - 1, model=model_without_ddp, optimizer=optimizer,
                      loss_scaler=loss_scaler, best_so_far=best_so_far, best_pose_ate_sofar=best_pose_ate_sofar)
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
        if epoch >= args.epochs:
            break
        if args.stop_after_epochs is not None and epoch - start_epoch >= args.stop_after_epochs:
            log.info("stopping after %d epochs as requested (--stop_after_epochs); resume with --resume",
                     args.stop_after_epochs)
            interrupted = True
            break
        train_stats = train_one_epoch(model, train_criterion, train_loader, optimizer, device, epoch, loss_scaler,
                                      args, log_writer)
    log.info("Training time %s", str(datetime.timedelta(seconds=int(time.time() - t0))))
    if not interrupted and not args.eval_only:
        save_final_model(args.output_dir, args, model_without_ddp, best_so_far)
    if log_writer is not None:
        log_writer.close()
    barrier()
    if args.distributed and dist.is_initialized():
        dist.destroy_process_group()
    return {"best_so_far": best_so_far, "epoch": epoch, "output_dir": args.output_dir,
            "test_stats": test_stats, "train_stats": train_stats}
