"""Per-dataset settings of the evaluation (the original's ``eval_metadata`` table, as data: no string eval).

Every path is relative to a data root (``--eval_data_root``, default ``.`` = the repository root, where the
original expects ``data/...``). For each dataset key (``davis, kitti, bonn, scannet, tum, nyu, sintel``):

* pose evaluation (``--mode=eval_pose``): where the frames of a sequence are, its GT trajectory and format, an
  optional folder of GT dynamic masks, the sequence list (or "every sub-folder", ``full_seq``), whether existing
  outputs are skipped (ScanNet), and which optical-flow network the optimizer uses (RAFT-sintel for Sintel);
* single-frame depth (``--mode=eval_depth``): which images are predicted and where the ``*depth.npy`` go;
* video depth (:mod:`monst3r.eval.video_depth`): where the GT depth maps are and how they are decoded.

Layouts (evaluation spec §2)::

    sintel   data/sintel/training/final/<seq>/frame_%04d.png        GT data/sintel/training/camdata_left/<seq>/*.cam
    bonn     data/bonn/rgbd_bonn_dataset/rgbd_bonn_<seq>/rgb_110/    GT .../groundtruth_110.txt (TUM)
    tum      data/tum/<seq>/rgb_90/                                  GT <seq>/groundtruth_90.txt (TUM)
    scannet  data/scannetv2/<seq>/color_90/                          GT <seq>/pose_90.txt (16 numbers per line)
    davis    data/davis/DAVIS/JPEGImages/480p/<seq>/                 no GT; masks data/davis/DAVIS/masked_images/480p/<seq>
    kitti    data/kitti/depth_selection/val_selection_cropped/image_gathered/<drive>_02/   no GT trajectory
    nyu      data/nyu-v2/val/nyu_images/*.png                       single-frame depth only
    synthetic data/synthetic_eval/scene<seed>/                       GT <seq>/gt_traj.txt (TUM), <seq>/depth/*.npy
                                                                     (generated on first use: monst3r.eval.synthetic)
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from monst3r.datasets.synthetic.collection import EVAL_SEEDS
from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

__all__ = [
    "EVAL_DATASETS",
    "EvalDataset",
    "SINTEL_POSE_SEQUENCES",
    "SINTEL_ALL_SEQUENCES",
    "BONN_SEQUENCES",
    "TUM_SEQUENCES",
    "KITTI_DRIVES",
    "get_dataset",
    "list_sequences",
]

#: The 14 Sintel sequences of the pose evaluation (all 23 with ``--full_seq``).
SINTEL_POSE_SEQUENCES = ("alley_2", "ambush_4", "ambush_5", "ambush_6", "cave_2", "cave_4", "market_2", "market_5",
                         "market_6", "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3")
#: Every sequence of the Sintel training set (what ``--full_seq`` finds on disk).
SINTEL_ALL_SEQUENCES = ("alley_1", "alley_2", "ambush_2", "ambush_4", "ambush_5", "ambush_6", "ambush_7", "bamboo_1",
                        "bamboo_2", "bandage_1", "bandage_2", "cave_2", "cave_4", "market_2", "market_5", "market_6",
                        "mountain_1", "shaman_2", "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3")
#: Bonn RGB-D dynamic sequences used for pose and video depth (folder ``rgbd_bonn_<seq>``).
BONN_SEQUENCES = ("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous")
#: TUM RGB-D dynamic sequences (freiburg3), folder names after extraction.
TUM_SEQUENCES = tuple(f"rgbd_dataset_freiburg3_{s}" for s in (
    "sitting_static", "sitting_xyz", "sitting_halfsphere", "sitting_rpy",
    "walking_static", "walking_xyz", "walking_halfsphere", "walking_rpy"))
#: KITTI raw drives of the video-depth evaluation (``image_gathered/<drive>_sync_02``).
KITTI_DRIVES = ("2011_09_26_drive_0002", "2011_09_26_drive_0005", "2011_09_26_drive_0013", "2011_09_26_drive_0020",
                "2011_09_26_drive_0023", "2011_09_26_drive_0036", "2011_09_26_drive_0079", "2011_09_26_drive_0095",
                "2011_09_26_drive_0113", "2011_09_28_drive_0037", "2011_09_29_drive_0026", "2011_09_30_drive_0016",
                "2011_10_03_drive_0047")


@dataclass(frozen=True)
class EvalDataset:
    """Settings of one evaluation dataset. Templates use ``{root}`` (the data root), ``{img_path}``,
    ``{anno_path}``, ``{mask_path}`` and ``{seq}``; ``None`` means "not available".

    Attributes:
        name: the ``--eval_dataset`` key.
        img_path: folder holding the sequences (relative to the data root).
        frames_dir: template of the folder of one sequence's frames.
        sequences: the default sequence list (``None`` with ``full_seq``: every sub-folder of ``img_path``).
        full_seq: every sub-folder of ``img_path`` is a sequence (forces ``--full_seq``).
        traj_format: GT trajectory format for :func:`monst3r.eval.trajectory.load_traj`, or None (no GT).
        gt_traj: template of the GT trajectory path (a folder of ``.cam`` files for Sintel).
        anno_path: extra annotation folder (Sintel cameras).
        mask_dir: template of a folder of GT dynamic masks named like the frames (``--use_gt_mask``).
        skip_existing: skip a sequence whose output folder exists (ScanNet, as the original).
        sintel_flow: the optimizer's flow network is RAFT trained on Sintel (else SEA-RAFT).
        download: how to get the raw data (shown in errors).
        prepare: how to build the derived folders (``rgb_110``, ``rgb_90``...), or None.
        depth_images: template (glob) of the images of one sequence for single-frame depth, or None.
        depth_gt: template (glob) of the GT depth maps of one sequence for video depth, or None.
        depth_gt_kind: decoder of ``depth_gt`` files: ``dpt`` (Sintel), ``png5000`` (Bonn), ``png256`` (KITTI),
            ``npy`` (NYU).
        video_depth_dir: default prediction folder of the video-depth evaluation (the documented command's
            ``--output_dir``).
        seq_prefix: prefix of the sequence folders that is not part of the sequence name (Bonn: ``rgbd_bonn_``),
            stripped when sequences are listed from disk.
        generated: the data are generated here on first use (the synthetic benchmark), not downloaded.
    """

    name: str
    img_path: str
    frames_dir: str
    sequences: Optional[tuple[str, ...]]
    full_seq: bool
    traj_format: Optional[str]
    gt_traj: Optional[str]
    anno_path: Optional[str] = None
    mask_dir: Optional[str] = None
    skip_existing: bool = False
    sintel_flow: bool = False
    download: str = ""
    prepare: Optional[str] = None
    depth_images: Optional[str] = None
    depth_gt: Optional[str] = None
    depth_gt_kind: Optional[str] = None
    video_depth_dir: Optional[str] = None
    seq_prefix: str = ""
    generated: bool = False

    # ------------------------------------------------------------------------------------------ paths
    def _fmt(self, template: str, root: PathLike, seq: str = "") -> str:
        values = dict(root=str(root), seq=seq, img_path=os.path.join(str(root), self.img_path),
                      anno_path=os.path.join(str(root), self.anno_path or ""))
        return template.format(**values)

    def root_dir(self, root: PathLike) -> Path:
        """``<root>/<img_path>``: the folder holding the sequences."""
        return Path(root) / self.img_path

    def sequence_dir(self, root: PathLike, seq: str) -> Path:
        """Folder of the frames of ``seq``."""
        return Path(self._fmt(self.frames_dir, root, seq))

    def gt_traj_path(self, root: PathLike, seq: str) -> Optional[Path]:
        """GT trajectory file (or ``.cam`` folder) of ``seq``; None when the dataset has no GT poses."""
        return None if self.gt_traj is None else Path(self._fmt(self.gt_traj, root, seq))

    def mask_path(self, root: PathLike, seq: str) -> Optional[Path]:
        """Folder of the GT dynamic masks of ``seq`` (named like the frames), or None."""
        return None if self.mask_dir is None else Path(self._fmt(self.mask_dir, root, seq))

    def gt_focal_path(self, root: PathLike, seq: str) -> Path:
        """``--use_gt_focal``: ``<img_path with 'final' -> 'camdata_left'>/<seq>/focal.txt`` (as the original)."""
        return Path(os.path.join(str(root), self.img_path.replace("final", "camdata_left"), seq, "focal.txt"))

    def depth_gt_glob(self, root: PathLike, seq: str) -> Optional[str]:
        """Glob pattern of the GT depth maps of ``seq`` (video depth), or None."""
        return None if self.depth_gt is None else self._fmt(self.depth_gt, root, seq)

    def depth_image_glob(self, root: PathLike, seq: str) -> Optional[str]:
        """Glob pattern of the images of ``seq`` for single-frame depth, or None."""
        return None if self.depth_images is None else self._fmt(self.depth_images, root, seq)

    def missing_data_hint(self) -> str:
        """What to run to get this dataset (for error messages)."""
        hint = f"download it with `{self.download}`"
        if self.prepare:
            hint += f", then prepare it with `{self.prepare}`"
        return hint + " (see data/evaluation_script.md), or point --eval_data_root at the folder holding data/"


def _dl(name: str) -> str:
    return f"bash data/download_{name}.sh"


EVAL_DATASETS: dict[str, EvalDataset] = {
    "sintel": EvalDataset(
        name="sintel", img_path="data/sintel/training/final", frames_dir="{img_path}/{seq}",
        sequences=SINTEL_POSE_SEQUENCES, full_seq=False, traj_format="sintel",
        gt_traj="{anno_path}/{seq}", anno_path="data/sintel/training/camdata_left",
        mask_dir="{root}/data/sintel/training/dynamic_label_perfect/{seq}", sintel_flow=True,
        download=_dl("sintel"), depth_images="{img_path}/{seq}/*.png",
        depth_gt="{root}/data/sintel/training/depth/{seq}/*.dpt", depth_gt_kind="dpt",
        video_depth_dir="results/sintel_video_depth"),
    "bonn": EvalDataset(
        name="bonn", img_path="data/bonn/rgbd_bonn_dataset", frames_dir="{img_path}/rgbd_bonn_{seq}/rgb_110",
        sequences=BONN_SEQUENCES, full_seq=False, traj_format="tum",
        gt_traj="{img_path}/rgbd_bonn_{seq}/groundtruth_110.txt", download=_dl("bonn"),
        prepare="python data/prepare_eval_bonn.py", depth_images="{img_path}/rgbd_bonn_{seq}/rgb_110/*.png",
        depth_gt="{img_path}/rgbd_bonn_{seq}/depth_110/*.png", depth_gt_kind="png5000",
        video_depth_dir="results/bonn_video_depth", seq_prefix="rgbd_bonn_"),
    "tum": EvalDataset(
        name="tum", img_path="data/tum", frames_dir="{img_path}/{seq}/rgb_90", sequences=None, full_seq=True,
        traj_format="tum", gt_traj="{img_path}/{seq}/groundtruth_90.txt", download=_dl("tum_dynamics"),
        prepare="python data/prepare_eval_tum.py"),
    "scannet": EvalDataset(
        name="scannet", img_path="data/scannetv2", frames_dir="{img_path}/{seq}/color_90", sequences=None,
        full_seq=True, traj_format="replica", gt_traj="{img_path}/{seq}/pose_90.txt", skip_existing=True,
        download=_dl("scannetv2"), prepare="python data/prepare_eval_scannet.py",
        depth_images="{img_path}/{seq}/color_90/*.jpg"),
    "davis": EvalDataset(
        name="davis", img_path="data/davis/DAVIS/JPEGImages/480p", frames_dir="{img_path}/{seq}", sequences=None,
        full_seq=True, traj_format=None, gt_traj=None,
        mask_dir="{root}/data/davis/DAVIS/masked_images/480p/{seq}", download="python data/download_davis.py"),
    "kitti": EvalDataset(
        name="kitti", img_path="data/kitti/depth_selection/val_selection_cropped/image_gathered",
        frames_dir="{img_path}/{seq}", sequences=None, full_seq=True, traj_format=None, gt_traj=None,
        download=_dl("kitti"), prepare="python data/prepare_eval_kitti.py", depth_images="{img_path}/{seq}/*.png",
        depth_gt="{root}/data/kitti/depth_selection/val_selection_cropped/groundtruth_depth_gathered/{seq}/*.png",
        depth_gt_kind="png256", video_depth_dir="results/kitti_video_depth"),
    "nyu": EvalDataset(
        name="nyu", img_path="data/nyu-v2/val/nyu_images", frames_dir="{img_path}", sequences=None, full_seq=False,
        traj_format=None, gt_traj=None, download=_dl("nyuv2") + " (then rename data/nyu_v2 to data/nyu-v2)",
        prepare="python data/prepare_eval_nyuv2.py", depth_images="{img_path}/*.png",
        depth_gt="{root}/data/nyu-v2/val/nyu_depths/*.npy", depth_gt_kind="npy",
        video_depth_dir="results/nyuv2_depth"),
    # held-out procedural sequences (seeds never used in training), generated on first use
    "synthetic": EvalDataset(
        name="synthetic", img_path="data/synthetic_eval", frames_dir="{img_path}/{seq}",
        sequences=tuple(f"scene{s}" for s in EVAL_SEEDS), full_seq=False, traj_format="tum",
        gt_traj="{img_path}/{seq}/gt_traj.txt", mask_dir="{img_path}/{seq}/dynamic_masks",
        download="python -m monst3r.eval.synthetic prepare", depth_images="{img_path}/{seq}/*.png",
        depth_gt="{img_path}/{seq}/depth/*.npy", depth_gt_kind="npy",
        video_depth_dir="results/synthetic_video_depth", generated=True),
}

#: Datasets with a pose evaluation (``eval_pose`` on ``nyu`` crashed in the original: single images only).
POSE_DATASETS = ("sintel", "bonn", "tum", "scannet", "davis", "kitti", "synthetic")


def get_dataset(name: str) -> EvalDataset:
    """The settings of ``--eval_dataset name``; an unknown name is a :class:`Monst3rInputError`.

    (The original silently fell back to Sintel for unknown keys; its command line only accepted the keys below.)
    """
    try:
        return EVAL_DATASETS[name]
    except KeyError:
        raise Monst3rInputError(f"unknown evaluation dataset {name!r}: use one of "
                                f"{', '.join(sorted(EVAL_DATASETS))}") from None


def list_sequences(info: EvalDataset, root: PathLike, seq_list: Optional[list[str]] = None,
                   full_seq: bool = False) -> list[str]:
    """The sequences to evaluate, sorted (evaluation spec §3.1).

    ``seq_list`` wins; else every sub-folder of ``img_path`` when the dataset (or ``full_seq``) says so; else the
    dataset's list. Raises :class:`Monst3rInputError` when the data folder is missing (naming the download and
    preparation commands), when a requested sequence has no frame folder, or when nothing is found.
    """
    base = info.root_dir(root)
    if info.generated:
        from monst3r.eval.synthetic import ensure_eval_sequences

        ensure_eval_sequences(root, log=log.info)
    if not base.is_dir():
        raise Monst3rInputError(f"evaluation data for {info.name!r} not found: {base} does not exist; "
                                + info.missing_data_hint())
    if seq_list:
        seqs = list(seq_list)
    elif info.full_seq or full_seq:
        seqs = [p.name[len(info.seq_prefix):] for p in base.iterdir()
                if p.is_dir() and p.name.startswith(info.seq_prefix)]
    else:
        seqs = list(info.sequences or ())
    seqs = sorted(seqs)
    if not seqs:
        raise Monst3rInputError(f"no sequences found in {base} for {info.name!r}; " + info.missing_data_hint())
    missing = [s for s in seqs if not info.sequence_dir(root, s).is_dir()]
    if missing:
        raise Monst3rInputError(
            f"{len(missing)} sequence folder(s) of {info.name!r} missing, e.g. {info.sequence_dir(root, missing[0])}"
            f" ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); " + info.missing_data_hint()
            + ". Use --seq_list to evaluate a subset.")
    return seqs
