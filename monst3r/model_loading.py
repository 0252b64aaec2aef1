"""Checkpoint loading for :class:`monst3r.model.AsymmetricCroCo3DStereo` (spec model.md 5): official ``.pth``
files (``{'args': Namespace(model=<constructor string>), 'model': state_dict}``, loaded with ``weights_only=True``
and a safe parser instead of ``eval``), Hugging Face folders (``config.json`` + ``model.safetensors``) and hub repo
ids; the configuration check, :func:`normalize_for_inference`, :class:`CheckpointError`, and the official model
string and hub id (written here once).

Loading is strict: missing or unexpected keys are errors that name them (after the two documented compatibility
steps, in :meth:`AsymmetricCroCo3DStereo.prepare_state_dict`). This module does not import the network class:
the builders take it as ``model_cls``; :mod:`monst3r.model` binds it (``load_model``, ``build_model``,
``model_from_string``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import torch

from monst3r.errors import Monst3rInputError
from monst3r.utils.files import sniff_file_kind
from monst3r.utils.parsing import MODEL_KWARGS, SafeParseError, parse_model_string

log = logging.getLogger(__name__)
inf = math.inf

#: Hugging Face hub id of the official MonST3R checkpoint (the demo's default weights).
DEFAULT_HUB_MODEL = "Junyi42/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt"
#: The original training's default ``--model`` (the official ViT-L / DPT network), byte for byte: its runs of
#: spaces come from the original's line continuations (the golden parameter-group spec records this string).
ORIGINAL_TRAIN_MODEL_STRING = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
    "                        img_size=(512, 512), head_type='dpt', output_mode='pts3d', "
    "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf),                         "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, "
    "dec_num_heads=12, freeze='encoder')")
#: Constructor string of the official checkpoint (spec model.md 3.2): the same, whitespace normalised.
OFFICIAL_MODEL_STRING = " ".join(ORIGINAL_TRAIN_MODEL_STRING.split())


class CheckpointError(Monst3rInputError):
    """A checkpoint that cannot be used (missing, truncated, unsafe, wrong keys or shapes)."""


def short_list(keys: List[str], n: int = 8) -> str:
    """The first ``n`` of ``keys`` for an error message (``... (N in all)`` when more)."""
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def normalize_for_inference(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """ManyAR_PatchEmbed -> PatchEmbedDust3R and landscape_only=False (semantic, not textual, rewrite)."""
    kwargs = dict(kwargs)
    if kwargs.get("patch_embed_cls") == "ManyAR_PatchEmbed":
        kwargs["patch_embed_cls"] = "PatchEmbedDust3R"
    kwargs["landscape_only"] = False
    return kwargs


def _tuplify(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


#: Bounds of :func:`check_model_config` (the official network: 571M parameters, 1024/768-dim, 24/12 blocks).
MAX_MODEL_PARAMS = 5_000_000_000
MAX_EMBED_DIM = 16384
MAX_DEPTH = 256
MAX_IMG_SIDE = 16384


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_model_config(kwargs: Mapping[str, Any]) -> None:
    """Refuse, before anything is allocated, a configuration with wrong value types or absurd sizes.

    Not in the original (which ``eval``s the string and lets the allocator fail): a checkpoint or ``--model``
    string asking for, e.g., ``enc_embed_dim=1_000_000`` would otherwise try to allocate terabytes. Raises
    :class:`CheckpointError` naming the argument.
    """
    def bad(name: str, why: str) -> CheckpointError:
        return CheckpointError(f"invalid model configuration: {name}={kwargs[name]!r} {why}")

    bounds = {"patch_size": (1, 128), "enc_embed_dim": (1, MAX_EMBED_DIM), "dec_embed_dim": (1, MAX_EMBED_DIM),
              "enc_depth": (1, MAX_DEPTH), "dec_depth": (1, MAX_DEPTH), "enc_num_heads": (1, 1024),
              "dec_num_heads": (1, 1024)}
    for name, (lo, hi) in bounds.items():
        if name in kwargs and not (_is_int(kwargs[name]) and lo <= kwargs[name] <= hi):
            raise bad(name, f"must be an integer in [{lo}, {hi}]")
    for emb, heads in (("enc_embed_dim", "enc_num_heads"), ("dec_embed_dim", "dec_num_heads")):
        if emb in kwargs and heads in kwargs and kwargs[emb] % kwargs[heads]:
            raise bad(emb, f"must be a multiple of {heads}={kwargs[heads]}")
    if "img_size" in kwargs:
        v = kwargs["img_size"]
        sides = [v] if _is_int(v) else list(v) if isinstance(v, (list, tuple)) and len(v) == 2 else None
        if not sides or not all(_is_int(x) and 1 <= x <= MAX_IMG_SIDE for x in sides):
            raise bad("img_size", f"must be an integer or an (H, W) pair of integers in [1, {MAX_IMG_SIDE}]")
    if "mlp_ratio" in kwargs and not (isinstance(kwargs["mlp_ratio"], (int, float))
                                      and not isinstance(kwargs["mlp_ratio"], bool) and 0 < kwargs["mlp_ratio"] <= 64):
        raise bad("mlp_ratio", "must be a number in (0, 64]")
    if "mask_ratio" in kwargs and not (isinstance(kwargs["mask_ratio"], (int, float))
                                       and 0 <= kwargs["mask_ratio"] < 1):
        raise bad("mask_ratio", "must be a number in [0, 1)")
    for name in ("output_mode", "head_type", "freeze", "patch_embed_cls", "pos_embed"):
        if name in kwargs and not isinstance(kwargs[name], str):
            raise bad(name, "must be a string")
    for name in ("landscape_only", "norm_im2_in_dec"):
        if name in kwargs and not isinstance(kwargs[name], bool):
            raise bad(name, "must be True or False")
    for name in ("depth_mode", "conf_mode"):
        v = kwargs.get(name)
        if v is None and name == "conf_mode":
            continue
        if name in kwargs and not (isinstance(v, (list, tuple)) and len(v) == 3 and isinstance(v[0], str)
                                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v[1:])):
            raise bad(name, "must be a (mode, vmin, vmax) triple such as ('exp', 1, inf)")
    # rough parameter count (encoder + two decoders; the heads are small next to them)
    E, D = kwargs.get("enc_embed_dim", 768), kwargs.get("dec_embed_dim", 512)
    Le, Ld = kwargs.get("enc_depth", 12), kwargs.get("dec_depth", 8)
    r, p = kwargs.get("mlp_ratio", 4), kwargs.get("patch_size", 16)
    n = Le * (4 + 2 * r) * E * E + 2 * Ld * (8 + 2 * r) * D * D + E * D + 3 * p * p * E + 4 * p * p * D
    if n > MAX_MODEL_PARAMS:
        raise CheckpointError(f"invalid model configuration: about {n / 1e9:.0f} billion parameters "
                              f"(enc_embed_dim={E}, enc_depth={Le}, dec_embed_dim={D}, dec_depth={Ld}); "
                              f"refusing to allocate more than {MAX_MODEL_PARAMS / 1e9:.0f} billion")


def build_network(model_cls: type, kwargs: Dict[str, Any], for_inference: bool = False) -> torch.nn.Module:
    """``model_cls(**kwargs)`` after :func:`check_model_config`; errors are :class:`CheckpointError`.

    ``model_cls`` is :class:`monst3r.model.AsymmetricCroCo3DStereo` (passed in so that this module does not import
    the network: ``monst3r.model`` imports this one)."""
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"invalid model configuration {kwargs!r}: expected keyword arguments")
    kwargs = _tuplify(kwargs)
    if for_inference:
        kwargs = normalize_for_inference(kwargs)
    check_model_config(kwargs)
    try:
        return model_cls(**kwargs)
    except (TypeError, ValueError, NotImplementedError, RuntimeError, AssertionError, MemoryError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"invalid model configuration {kwargs}: {why}") from None


_NOT_A_CHECKPOINT_HINT = "give the official .pth (bash data/download_ckpt.sh) or a model folder"


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with argparse.Namespace allow-listed; clear errors otherwise.

    Files that are obviously not checkpoints (empty, text, images, ...) are refused before unpickling. With
    ``weights_only=True`` no code in the file ever runs, so any failure of the (restricted) unpickler is reported
    as :class:`CheckpointError`, never as the unpickler's own KeyError/IndexError.
    """
    kind = sniff_file_kind(path)
    if kind is not None:
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: it is {kind}; {_NOT_A_CHECKPOINT_HINT}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights only load failed" in str(exc).lower() or "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"refusing to load {path}: it contains Python objects other than plain weights, which are never "
                "executed (is it a MonST3R checkpoint from a source you trust? official checkpoints load fine); "
                f"{_NOT_A_CHECKPOINT_HINT}") from None
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: unreadable pickle ({first}); "
                              f"{_NOT_A_CHECKPOINT_HINT}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        try:  # a complete zip archive without torch's data.pkl is some other zip, not a truncated checkpoint
            with zipfile.ZipFile(path) as z:
                other_zip = not any(n.endswith("data.pkl") for n in z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            other_zip = False
        if other_zip:
            raise CheckpointError(f"{path} is not a MonST3R checkpoint: it is a zip archive without PyTorch data; "
                                  f"{_NOT_A_CHECKPOINT_HINT}") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {first} "
                              "(the file is truncated or not a PyTorch checkpoint; download it again)") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError, MemoryError) as exc:
        # a stream that looks like a pickle but is garbage: the restricted unpickler fails in odd ways
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: cannot unpickle it ({type(exc).__name__}); "
                              f"{_NOT_A_CHECKPOINT_HINT}") from None


def check_state_dict(sd: Any, path: Path) -> Dict[str, torch.Tensor]:
    """``sd`` must be a mapping of str -> Tensor; returns it as a dict (CheckpointError otherwise)."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: its weights are a {type(sd).__name__}, "
                              f"not a state dict; {_NOT_A_CHECKPOINT_HINT}")
    bad = [repr(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: entries {short_list(bad, 4)} of its state dict are "
                              f"not tensors; {_NOT_A_CHECKPOINT_HINT}")
    return dict(sd)


def _load_weights_into(model: torch.nn.Module, sd: Any, path: Path) -> None:
    """Strict load with the path in every message; a state dict of another network is named as such."""
    sd = check_state_dict(sd, path)
    own = model.state_dict()
    prepared = model.prepare_state_dict(sd)
    if own and not any(k in own for k in prepared):
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: none of its {len(sd)} weights belongs to the "
                              f"network (its keys start with {short_list(list(sd), 3) or 'nothing'}); "
                              f"{_NOT_A_CHECKPOINT_HINT}")
    try:
        model.load_state_dict(sd, strict=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _model_string_from_args(args: Any, path: Path) -> str:
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, dict) or not isinstance(args.get("model"), str):
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: it has no 'args.model' constructor string, so "
                              f"the network to build is unknown; {_NOT_A_CHECKPOINT_HINT}")
    return args["model"]


def _load_pth(model_cls: type, path: Path, device, for_inference: bool, verbose: bool) -> torch.nn.Module:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        what = (f"a dict with keys {short_list([str(k) for k in ckpt], 5)}" if isinstance(ckpt, dict)
                else f"a {type(ckpt).__name__}")
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: expected a dict with 'args' and 'model', found "
                              f"{what}; {_NOT_A_CHECKPOINT_HINT}")
    model_str = _model_string_from_args(ckpt["args"], path)
    try:
        _, kwargs = parse_model_string(model_str)
    except SafeParseError as exc:
        raise CheckpointError(f"{path}: unusable model string ({exc})") from None
    if verbose:
        log.info("instantiating: %s", model_str)
    try:
        model = build_network(model_cls, kwargs, for_inference=for_inference)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _load_weights_into(model, ckpt["model"], path)
    return model.to(device).eval()


def _read_config(path: Path) -> Dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path.parent} is not a MonST3R model folder: cannot read {path.name} ({exc}); "
                              f"{_NOT_A_CHECKPOINT_HINT}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path.parent} is not a MonST3R model folder: {path.name} holds a "
                              f"{type(cfg).__name__}, not an object of model arguments; {_NOT_A_CHECKPOINT_HINT}")
    unknown = sorted(set(cfg) - MODEL_KWARGS)
    if unknown:
        raise CheckpointError(f"{path.parent} is not a MonST3R model folder: {path.name} has unknown model "
                              f"arguments {unknown}; {_NOT_A_CHECKPOINT_HINT}")
    return cfg


def _load_weights_file(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc} (not a safetensors file, or a truncated download: "
                                  "fetch it again)") from None
    return check_state_dict(_torch_load(path), path)


def _load_folder(model_cls: type, folder: Path, device, for_inference: bool) -> torch.nn.Module:
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{folder} is not a MonST3R model folder: it has no config.json; "
                              f"{_NOT_A_CHECKPOINT_HINT}")
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).exists()), None)
    if weights is None:
        raise CheckpointError(f"{folder} is not a MonST3R model folder: it has neither model.safetensors nor "
                              f"pytorch_model.bin; {_NOT_A_CHECKPOINT_HINT}")
    cfg = _read_config(cfg_path)
    try:
        model = build_network(model_cls, cfg, for_inference=for_inference)
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    _load_weights_into(model, _load_weights_file(weights), weights)
    return model.to(device).eval()


def _load_hub(model_cls: type, repo_id: str, device, for_inference: bool, **hub_kwargs) -> torch.nn.Module:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        cfg = Path(hf_hub_download(repo_id, "config.json", **hub_kwargs))
        try:
            weights = Path(hf_hub_download(repo_id, "model.safetensors", **hub_kwargs))
        except EntryNotFoundError:
            weights = Path(hf_hub_download(repo_id, "pytorch_model.bin", **hub_kwargs))
    except Exception as exc:  # network errors, unknown repo, offline mode: all mean "cannot get the weights"
        raise CheckpointError(
            f"cannot download the model {repo_id!r} from the Hugging Face hub ({type(exc).__name__}). "
            "Pass --weights with a local .pth file or model folder (see data/download_ckpt.sh).") from None
    model = build_network(model_cls, _read_config(cfg), for_inference=for_inference)
    _load_weights_into(model, _load_weights_file(weights), weights)
    return model.to(device).eval()


def load_checkpoint_model(model_cls: type, model_path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                          verbose: bool = True, for_inference: bool = True, **hub_kwargs) -> torch.nn.Module:
    """Load an official-format ``.pth``, a Hugging Face folder (or its ``model.safetensors``) or a hub repo id into
    a ``model_cls`` network; returns it in eval mode on ``device``. ``verbose``: log the constructor string of a
    ``.pth`` (the original printed it). Public entry: :func:`monst3r.model.load_model`."""
    p = Path(model_path).expanduser()
    if p.is_file():
        return _load_pth(model_cls, p, device, for_inference, verbose) if p.suffix != ".safetensors" else \
            _load_folder(model_cls, p.parent, device, for_inference)
    if p.is_dir():
        return _load_folder(model_cls, p, device, for_inference)
    s = str(model_path)
    looks_like_repo = re.fullmatch(r"[\w.-]+/[\w.-]+", s) is not None and not s.startswith((".", "/", "~"))
    if not looks_like_repo or s.endswith((".pth", ".pt", ".bin", ".safetensors")):
        raise CheckpointError(f"checkpoint not found: {model_path} (give an existing .pth file, a model folder "
                              "or a Hugging Face repo id such as " + DEFAULT_HUB_MODEL + ")")
    return _load_hub(model_cls, s, device, for_inference, **hub_kwargs)
