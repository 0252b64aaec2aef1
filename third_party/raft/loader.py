"""Loading the official flow checkpoints: SEA-RAFT 'M' (default) and classic RAFT.

The architecture is chosen from the checkpoint's keys (never from the file name). Relative paths are looked up
first in the current working directory (as the original did) and then relative to the repository root.

Default locations (relative to the repository root, same as the original; ``bash data/download_ckpt.sh`` fills them):

* SEA-RAFT 'M': ``third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.pth``
* classic RAFT (Sintel pose evaluation): ``third_party/RAFT/models/raft-sintel.pth``
* classic RAFT (two-frame demo mask): ``third_party/RAFT/models/raft-things.pth``
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Dict, Mapping, Union

import torch
import torch.nn as nn

from monst3r.errors import Monst3rInputError
from monst3r.utils.files import sniff_file_kind

from .raft import RAFT
from .sea_raft import SEARAFT, SEARAFTConfig

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = Path("third_party/RAFT/models")
DEFAULT_SEARAFT_CKPT = MODELS_DIR / "Tartan-C-T-TSKH-spring540x960-M.pth"
DEFAULT_RAFT_SINTEL_CKPT = MODELS_DIR / "raft-sintel.pth"
DEFAULT_RAFT_THINGS_CKPT = MODELS_DIR / "raft-things.pth"
NAMED_CHECKPOINTS: Dict[str, Path] = {
    "searaft": DEFAULT_SEARAFT_CKPT,
    "sea-raft": DEFAULT_SEARAFT_CKPT,
    "searaft-m": DEFAULT_SEARAFT_CKPT,
    "raft": DEFAULT_RAFT_SINTEL_CKPT,
    "raft-sintel": DEFAULT_RAFT_SINTEL_CKPT,
    "raft-things": DEFAULT_RAFT_THINGS_CKPT,
}

_SEARAFT_MARKER = "update_block.refine.0.gamma"
_RAFT_MARKER = "update_block.gru.convz1.weight"


def resolve_checkpoint(path_or_name: Union[str, Path, None] = None) -> Path:
    """Map a name from ``NAMED_CHECKPOINTS`` (or None = SEA-RAFT) or a path to an existing file.

    Raises:
        Monst3rInputError: when the file does not exist (the message says how to get it).
    """
    if path_or_name is None:
        path_or_name = "searaft"
    if isinstance(path_or_name, str) and path_or_name.lower() in NAMED_CHECKPOINTS:
        path = NAMED_CHECKPOINTS[path_or_name.lower()]
        # the download script falls back to the Hugging Face safetensors copy of SEA-RAFT when gdown is missing
        names = [path, path.with_suffix(".safetensors")] if path == DEFAULT_SEARAFT_CKPT else [path]
    else:
        path = Path(path_or_name).expanduser()
        names = [path]
    candidates = [p if p.is_absolute() else base / p for p in names for base in (Path.cwd(), REPO_ROOT)]
    candidates = list(dict.fromkeys(candidates))
    for cand in candidates:
        if cand.is_file():
            return cand
    raise Monst3rInputError(
        f"optical-flow checkpoint not found: {path} (looked for {', '.join(str(c) for c in candidates)}); "
        f"run `bash data/download_ckpt.sh` to fetch the SEA-RAFT/RAFT weights, "
        f"or disable the flow loss with `--flow_loss_weight 0`")


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a ``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file to a flat tensor dict."""
    path = Path(path)
    hint = ("give the SEA-RAFT/RAFT .pth from `bash data/download_ckpt.sh`, or disable the flow loss with "
            "`--flow_loss_weight 0`")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Mapping = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Monst3rInputError(f"{path} is not an optical-flow checkpoint: cannot read it as safetensors "
                                    f"({why}); {hint}") from None
    else:
        kind = sniff_file_kind(path)
        if kind is not None:
            raise Monst3rInputError(f"{path} is not an optical-flow checkpoint: it is {kind}; {hint}")
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise Monst3rInputError(
                f"refusing to load optical-flow checkpoint {path}: it holds Python objects other than plain weights "
                f"(never executed; {str(exc).splitlines()[0][:120]}); {hint}") from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise Monst3rInputError(
                f"cannot read optical-flow checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                f"delete it and run `bash data/download_ckpt.sh` again") from None
        except (KeyError, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError, MemoryError) as exc:
            raise Monst3rInputError(f"{path} is not an optical-flow checkpoint: cannot unpickle it "
                                    f"({type(exc).__name__}); {hint}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in sd.items()):
        what = type(sd).__name__ if not isinstance(sd, Mapping) else "a dict whose entries are not all tensors"
        raise Monst3rInputError(f"{path} is not an optical-flow checkpoint: it does not hold a state dict "
                                f"(got {what}); {hint}")
    return dict(sd)


def normalize_state_dict(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strip a leading ``module.`` (DataParallel) and restore de-duplicated BatchNorm aliases.

    Projection shortcuts register one BatchNorm under two names (``bn3``/``downsample.1`` in SEA-RAFT,
    ``norm3``/``downsample.1`` in RAFT). Safetensors exports keep only one of each twin; the missing one is
    filled from the other so ``strict=True`` loading works.
    """
    out = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    norm = ".bn3." if _SEARAFT_MARKER in out else ".norm3."
    for key in list(out):
        for src, dst in ((norm, ".downsample.1."), (".downsample.1.", norm)):
            if src in key:
                out.setdefault(key.replace(src, dst), out[key])
    return out


def detect_architecture(sd: Mapping[str, torch.Tensor]) -> str:
    """``"searaft"`` or ``"raft"`` from the state-dict keys; raises Monst3rInputError otherwise."""
    if _SEARAFT_MARKER in sd:
        return "searaft"
    if _RAFT_MARKER in sd:
        return "raft"
    sample = ", ".join(list(sd)[:3])
    raise Monst3rInputError(
        f"unrecognised optical-flow checkpoint (keys start with {sample}); expected SEA-RAFT "
        f"(Tartan-C-T-TSKH-spring540x960-M.pth) or classic large RAFT (raft-sintel.pth / raft-things.pth)")


def build_flow_model(sd: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build the matching network for a normalised state dict and load it strictly (on CPU)."""
    arch = detect_architecture(sd)
    try:
        model: nn.Module = SEARAFT(SEARAFTConfig.from_state_dict(sd)) if arch == "searaft" else RAFT()
        result = model.load_state_dict(sd, strict=False)
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError, ZeroDivisionError, MemoryError) as exc:
        # incomplete SEA-RAFT key set (config inference) or tensors of the wrong shape
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise Monst3rInputError(f"{arch} checkpoint does not match the network ({type(exc).__name__}: {msg}); "
                                f"is the file truncated or from another model? run `bash data/download_ckpt.sh`"
                                ) from None
    if result.missing_keys or result.unexpected_keys:
        raise Monst3rInputError(
            f"{arch} checkpoint does not match the network: missing keys {result.missing_keys[:8]}, "
            f"unexpected keys {result.unexpected_keys[:8]} (is the file truncated or from another model?)")
    return model


def load_flow_model(path_or_name: Union[str, Path, None] = None,
                    device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Load SEA-RAFT or classic RAFT from a checkpoint, ready for inference.

    Args:
        path_or_name: a checkpoint path (``.pth`` / ``.safetensors``) or one of ``NAMED_CHECKPOINTS``
            (``"searaft"`` default, ``"raft"``/``"raft-sintel"``, ``"raft-things"``).
        device: where to put the network.

    Returns:
        The network in evaluation mode (``nn.Module.eval``) with ``requires_grad=False``; call it as
        ``net(img1_0_255, img2_0_255, iters=20, test_mode=True)[1]`` -> ``[B, 2, H, W]``.

    Raises:
        Monst3rInputError: missing file (names ``data/download_ckpt.sh`` and ``--flow_loss_weight 0``),
            unknown architecture or key mismatch.
    """
    path = resolve_checkpoint(path_or_name)
    sd = normalize_state_dict(read_state_dict(path))
    model = build_flow_model(sd)
    logger.info("loaded %s flow network from %s", type(model).__name__, path)
    model.requires_grad_(False)
    return model.to(device).eval()
