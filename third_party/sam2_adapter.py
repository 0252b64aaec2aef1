"""Thin adapter over the optional PyPI ``sam2`` package (``sam2==1.1.0``) for MonST3R's mask refinement.

MonST3R vendored a SAM2 fork whose only relevant changes are (a) ``init_state`` accepting a ``[N, 3, H, W]``
float tensor in [0, 1] as the video, and (b) float32 memory features on CPU. This module reproduces both on top
of the unmodified package (``shared/spec/third_party.md`` §6):

* :func:`tensor_video_loader` temporarily routes tensor videos through :func:`preprocess_video_tensor`;
* :func:`build_video_predictor` builds the predictor (legacy class by default, which MonST3R's copy is based on)
  and on CPU casts the bfloat16 memory to float32 before memory attention;
* :func:`two_pass_refine` runs the odd/even prompting procedure on any object with the predictor API
  (``init_state``, ``reset_state``, ``add_new_mask``, ``propagate_in_video``).

``sam2`` is imported lazily; importing this module never requires it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from monst3r.errors import Monst3rInputError
from monst3r.utils.files import sniff_file_kind

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAM2_REQUIREMENT = "sam2==1.1.0"
DEFAULT_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"
DEFAULT_SAM2_CHECKPOINT = Path("third_party/sam2/checkpoints/sam2.1_hiera_large.pt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LEGACY_OVERRIDE = "++model._target_=sam2.sam2_video_predictor_legacy.SAM2VideoPredictor"
_PREDICTOR_MODULES = ("sam2.sam2_video_predictor", "sam2.sam2_video_predictor_legacy")


def sam2_unavailable_reason() -> Optional[str]:
    """None when ``sam2`` imports, else a short reason."""
    try:
        importlib.import_module("sam2.build_sam")
    except Exception as exc:  # ImportError, or a broken install (hydra, ...)
        return f"the optional `sam2` package cannot be imported ({type(exc).__name__}: {exc})"
    return None


def resolve_sam2_checkpoint(checkpoint: Union[str, Path, None] = None) -> Path:
    """The checkpoint path: absolute as given; relative -> working directory if it exists there, else repo root."""
    path = Path(checkpoint).expanduser() if checkpoint is not None else DEFAULT_SAM2_CHECKPOINT
    if path.is_absolute() or (Path.cwd() / path).is_file():
        return path if path.is_absolute() else Path.cwd() / path
    return REPO_ROOT / path


def preprocess_video_tensor(frames: torch.Tensor, image_size: int, device: Union[str, torch.device, None] = None,
                            ) -> Tuple[torch.Tensor, int, int]:
    """MonST3R's tensor-video preprocessing for SAM2.

    Args:
        frames: ``[N, 3, H, W]`` float RGB in [0, 1].
        image_size: the model's square input size (1024 for SAM2.1).
        device: where to put the result (default: the frames' device).

    Returns:
        ``([N, 3, S, S]`` bicubic-resized (``align_corners=False``, no antialias, no clamping) and ImageNet
        mean/std normalised, ``H``, ``W)``.
    """
    h, w = frames.shape[-2:]
    x = F.interpolate(frames.float(), size=(image_size, image_size), mode="bicubic", align_corners=False)
    x = x.to(device if device is not None else frames.device)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std, int(h), int(w)


@contextlib.contextmanager
def tensor_video_loader() -> Iterator[None]:
    """Let ``predictor.init_state(video_path=<[N,3,H,W] tensor>)`` work with the unmodified package.

    Replaces ``load_video_frames`` in the predictor modules for the duration of the block; anything that is not a
    tensor goes to the original loader. A no-op when ``sam2`` is not installed.
    """
    patched = []
    for name in _PREDICTOR_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        original = getattr(module, "load_video_frames", None)
        if original is None:
            continue

        def loader(*args: Any, _original=original, **kwargs: Any):
            video = kwargs.get("video_path", args[0] if args else None)
            if not isinstance(video, torch.Tensor):
                return _original(*args, **kwargs)
            image_size = kwargs.get("image_size", args[1] if len(args) > 1 else None)
            offload = kwargs.get("offload_video_to_cpu", False)
            device = torch.device("cpu") if offload else kwargs.get("compute_device", video.device)
            return preprocess_video_tensor(video, int(image_size), device)

        module.load_video_frames = loader
        patched.append((module, original))
    try:
        yield
    finally:
        for module, original in patched:
            module.load_video_frames = original


def _float32_memory_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
    """Forward pre-hook: cast bfloat16 ``memory``/``memory_pos`` to float32 (sam2 1.1.0 stores memory in bf16)."""
    for key in ("memory", "memory_pos"):
        value = kwargs.get(key)
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            kwargs[key] = value.float()
    return args, kwargs


def build_video_predictor(config: str, checkpoint: Union[str, Path, None], device: Union[str, torch.device],
                          legacy: bool = True, hydra_overrides: Sequence[str] = ()) -> Any:
    """Build a SAM2 video predictor from the PyPI package.

    Args:
        config: config name inside the package, e.g. ``configs/sam2.1/sam2.1_hiera_l.yaml``.
        checkpoint: the ``.pt`` weights (sam2's format: ``{"model": state_dict}``); None keeps the random
            initialisation (tests).
        device: compute device.
        legacy: use ``sam2.sam2_video_predictor_legacy.SAM2VideoPredictor`` (what MonST3R's copy is based on).
        hydra_overrides: extra config overrides, e.g. ``["++model.image_size=128"]`` (tests: a small model input).
    """
    from sam2.build_sam import build_sam2_video_predictor

    device = torch.device(device)
    # sam2 >= 1.1 ships the pre-rewrite predictor as a separate "legacy" module; 1.0's default class is that one
    extra = [_LEGACY_OVERRIDE] if legacy and importlib.util.find_spec(_PREDICTOR_MODULES[1]) is not None else []
    extra += list(hydra_overrides)
    hint = "give the SAM2.1 hiera-large .pt (bash data/download_ckpt.sh) or turn the refinement off (demo: --no_sam2)"
    if checkpoint is not None:  # None: random weights (tests build the real predictor that way)
        kind = sniff_file_kind(checkpoint) if Path(checkpoint).is_file() else "missing"
        if kind is not None:
            raise Monst3rInputError(f"{checkpoint} is not a SAM2 checkpoint: it is {kind}; {hint}")
    try:
        predictor = build_sam2_video_predictor(config, None if checkpoint is None else str(checkpoint), device=device,
                                               hydra_overrides_extra=extra)
    except pickle.UnpicklingError:
        raise Monst3rInputError(f"refusing to load {checkpoint}: it holds Python objects other than plain weights "
                                f"(never executed); {hint}") from None
    except (RuntimeError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        # sam2 raises a bare RuntimeError on missing/unexpected keys, KeyError when there is no 'model' entry
        msg = str(exc).splitlines()[0][:160] if str(exc) else "wrong or missing weights"
        raise Monst3rInputError(f"{checkpoint} is not a usable SAM2 checkpoint ({type(exc).__name__}: {msg}); "
                                f"{hint}") from None
    if device.type != "cuda":
        predictor.memory_attention.register_forward_pre_hook(_float32_memory_hook, with_kwargs=True)
    logger.info("built SAM2 video predictor from %s on %s", checkpoint, device)
    return predictor


@contextlib.contextmanager
def tf32_enabled(device: Union[str, torch.device]) -> Iterator[None]:
    """Enable TF32 matmul/cuDNN on Ampere+ CUDA devices for the block (as the original), restoring afterwards."""
    device = torch.device(device)
    if device.type != "cuda" or torch.cuda.get_device_properties(device).major < 8:
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def two_pass_refine(predictor: Any, frames: torch.Tensor, masks: Sequence[torch.Tensor], obj_id: int = 1
                    ) -> List[np.ndarray]:
    """MonST3R's odd/even SAM2 procedure.

    Pass A: reset, add the mask of every odd frame as a prompt, propagate forward from frame 0, keep the even
    frames' predictions. Pass B: the same with even prompts, keeping odd frames. (With SAM2.1 a prompted frame
    returns its own prompt, so each frame's result must come from the other parity.)

    Args:
        predictor: SAM2 video predictor (or any object with the same four methods).
        frames: ``[N, 3, H, W]`` float RGB in [0, 1] on the compute device.
        masks: N bool ``[H, W]`` prompt masks.
        obj_id: the object id used for the prompts (1 in the original).

    Returns:
        N bool arrays ``[H, W]`` (logits > 0); all-False for a frame the predictor did not return.
    """
    n, _, h, w = frames.shape
    with tensor_video_loader():
        state = predictor.init_state(video_path=frames)
    results: List[Optional[np.ndarray]] = [None] * n
    if getattr(predictor, "fill_hole_area", 0) > 0 and importlib.util.find_spec("sam2._C") is None:
        logger.info("SAM2 small-hole filling skipped: the optional compiled extension sam2._C is not installed")
    with warnings.catch_warnings():
        # Without the optional compiled extension ``sam2._C`` (the PyPI wheel built with SAM2_BUILD_CUDA=0) sam2
        # skips its small-hole filling (``fill_hole_area=8``) with a long multi-line warning; the original does the
        # same and prints it. We log one line instead (above); the masks are the same.
        warnings.filterwarnings("ignore", message=r"(?s).*Skipping the post-processing step")
        for prompt_parity in (1, 0):
            predictor.reset_state(state)
            for k in range(prompt_parity, n, 2):
                predictor.add_new_mask(state, frame_idx=k, obj_id=obj_id, mask=masks[k].to(frames.device).bool())
            for frame_idx, obj_ids, mask_logits in predictor.propagate_in_video(state, start_frame_idx=0):
                if frame_idx % 2 == prompt_parity:
                    continue
                idx = list(obj_ids).index(obj_id)
                results[frame_idx] = (mask_logits[idx] > 0.0).cpu().numpy()[0]
    missing = [k for k, r in enumerate(results) if r is None]
    if missing:
        logger.warning("SAM2 returned no mask for frames %s; using empty masks there", missing)
    return [r if r is not None else np.zeros((h, w), dtype=bool) for r in results]
