"""``AsymmetricCroCo3DStereo``: the MonST3R / DUSt3R two-view network, and checkpoint loading.

Data: two views, each ``{'img': [B,3,H,W] in [-1,1], 'true_shape': [B,2] (H,W), 'instance': list of B str}``.
``model(view1, view2) -> (res1, res2)`` with ``res1 = {'pts3d': [B,H,W,3], 'conf': [B,H,W]}`` and
``res2 = {'conf': [B,H,W], 'pts3d_in_other_view': [B,H,W,3]}``, both point maps in view 1's camera frame.

Checkpoints (spec model.md 5): official ``.pth`` files (``{'args': Namespace(model=<constructor string>),
'model': state_dict}``, loaded with ``weights_only=True`` and a safe parser instead of ``eval``), Hugging Face
folders (``config.json`` + ``model.safetensors``) and hub repo ids. Loading is strict: missing or unexpected keys
are errors that name them (after the two documented compatibility steps: the second decoder is copied from the
first when absent, and either alias name of the DPT ``layer_rn`` convs is accepted).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from croco.models.croco import CroCoNet
from monst3r.errors import Monst3rInputError
from monst3r.heads import head_factory
from monst3r.patch_embed import get_patch_embed
from monst3r.utils.files import sniff_file_kind
from monst3r.utils.misc import fill_default_args, freeze_all_params, interleave, is_symmetrized, transposed
from monst3r.utils.parsing import MODEL_KWARGS, SafeParseError, parse_model_string

log = logging.getLogger(__name__)
inf = math.inf

DEFAULT_HUB_MODEL = "Junyi42/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt"
#: Constructor string of the official checkpoint (spec model.md 3.2), normalised whitespace.
OFFICIAL_MODEL_STRING = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
    "freeze='encoder')")

_ALIAS_RE = re.compile(r"^(?P<pre>.*\.scratch\.)layer(?P<i>[1-4])_rn\.weight$")


class CheckpointError(Monst3rInputError):
    """A checkpoint that cannot be used (missing, truncated, unsafe, wrong keys or shapes)."""


class AsymmetricCroCo3DStereo(CroCoNet, PyTorchModelHubMixin, library_name="dust3r",
                              repo_url="https://github.com/junyi/monst3r", tags=["image-to-3d"]):
    """Two-view network: shared ViT encoder, two cross-attending decoders, two heads (spec model.md 3).

    Args:
        output_mode: 'pts3d'. head_type: 'linear' or 'dpt'.
        depth_mode: ``(mode, -inf, inf)`` with mode 'exp' | 'square' | 'linear'.
        conf_mode: ``('exp', vmin, vmax)`` or ``('sigmoid', vmin, vmax)``; None for no confidence.
        freeze: 'none' | 'mask' | 'encoder' | 'encoder_and_decoder'.
        landscape_only: apply the heads in landscape layout and transpose portrait items (ManyAR convention).
        patch_embed_cls: 'PatchEmbedDust3R' | 'ManyAR_PatchEmbed'.
        **croco_kwargs: CroCoNet arguments (img_size, enc_embed_dim, enc_depth, ..., pos_embed='RoPE100').
    """

    def __init__(self, output_mode: str = "pts3d", head_type: str = "linear", depth_mode=("exp", -inf, inf),
                 conf_mode=("exp", 1, inf), freeze: str = "none", landscape_only: bool = True,
                 patch_embed_cls: str = "PatchEmbedDust3R", **croco_kwargs):
        unknown = sorted(set(croco_kwargs) - MODEL_KWARGS)
        if unknown:
            raise ValueError(f"unknown model argument(s): {unknown}")
        self.patch_embed_cls = patch_embed_cls
        self.croco_args = fill_default_args(dict(croco_kwargs), CroCoNet.__init__)
        super().__init__(**self.croco_args)
        self.dec_blocks2 = copy.deepcopy(self.dec_blocks)
        self.set_downstream_head(output_mode, head_type, landscape_only, depth_mode, conf_mode,
                                 **{k: self.croco_args[k] for k in ("img_size", "patch_size")})
        self.set_freeze(freeze)

    # ------------------------------------------------------------------ construction
    def _build_patch_embed(self, img_size, patch_size, enc_embed_dim):
        return get_patch_embed(self.patch_embed_cls, img_size, patch_size, enc_embed_dim)

    def set_downstream_head(self, output_mode, head_type, landscape_only, depth_mode, conf_mode, patch_size,
                            img_size, **kw):
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        self.output_mode, self.head_type = output_mode, head_type
        self.depth_mode = tuple(depth_mode) if depth_mode is not None else None
        self.conf_mode = tuple(conf_mode) if conf_mode is not None else None
        self.landscape_only = bool(landscape_only)
        self.downstream_head1 = head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))
        self.downstream_head2 = head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))

    def set_freeze(self, freeze: str):
        """Freeze parameter groups (``requires_grad=False``); spec model.md 3.6."""
        self.freeze = freeze
        groups = {
            "none": [],
            "mask": [self.mask_token],
            "encoder": [self.mask_token, self.patch_embed, self.enc_blocks],
            "encoder_and_decoder": [self.mask_token, self.patch_embed, self.enc_blocks, self.dec_blocks,
                                    self.dec_blocks2],
        }
        if freeze not in groups:
            raise ValueError(f"unknown freeze mode {freeze!r}; use one of {sorted(groups)}")
        freeze_all_params(groups[freeze])

    # ------------------------------------------------------------------ state dicts
    def prepare_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Apply the two documented compatibility steps to an incoming state dict (returns a new dict).

        1. No ``dec_blocks2.*`` key at all: copy every ``dec_blocks.*`` entry (CroCo-pretrained checkpoints).
        2. DPT alias pairs ``scratch.layer{i}_rn.weight`` / ``scratch.layer_rn.{i-1}.weight``: either name is
           accepted; when both are present they must be equal.
        """
        sd = dict(state_dict)
        if not any(k.startswith("dec_blocks2") for k in sd):
            for k in list(sd):
                if k.startswith("dec_blocks."):
                    sd["dec_blocks2." + k[len("dec_blocks."):]] = sd[k]
        for k in list(sd):
            m = _ALIAS_RE.match(k)
            if m:
                other = f"{m['pre']}layer_rn.{int(m['i']) - 1}.weight"
                if other in sd and not torch.equal(sd[other], sd[k]):
                    raise CheckpointError(f"checkpoint aliases {k} and {other} hold different tensors")
                sd[other] = sd[k]
        for k in list(sd):
            m = re.match(r"^(?P<pre>.*\.scratch\.)layer_rn\.(?P<i>[0-3])\.weight$", k)
            if m:
                sd.setdefault(f"{m['pre']}layer{int(m['i']) + 1}_rn.weight", sd[k])
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load after :meth:`prepare_state_dict`; with ``strict`` any missing/unexpected key is a
        :class:`CheckpointError` naming the keys, and shape mismatches are reported the same way."""
        sd = self.prepare_state_dict(state_dict)
        own = self.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if strict and (missing or unexpected):
            raise CheckpointError(
                "checkpoint does not match the model: "
                + (f"missing keys {_short(missing)}" if missing else "")
                + ("; " if missing and unexpected else "")
                + (f"unexpected keys {_short(unexpected)}" if unexpected else "")
                + " (is this a MonST3R/DUSt3R checkpoint for this configuration?)")
        bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
        if bad:
            raise CheckpointError(f"checkpoint shapes do not match the model: {_short(bad)}")
        return super().load_state_dict(sd, strict=strict, assign=assign)

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _true_shape(view: Dict[str, Any]) -> torch.Tensor:
        img = view["img"]
        ts = view.get("true_shape")
        if ts is None:
            return torch.tensor(img.shape[-2:], dtype=torch.int64)[None].repeat(img.shape[0], 1)
        return torch.as_tensor(ts).reshape(img.shape[0], 2)

    def _encode_image_pairs(self, img1, img2, shape1, shape2):
        if img1.shape[-2:] == img2.shape[-2:]:
            out, pos = self._encode_image(torch.cat((img1, img2), dim=0), torch.cat((shape1, shape2), dim=0))
            out1, out2 = out.chunk(2, dim=0)
            pos1, pos2 = pos.chunk(2, dim=0)
        else:
            out1, pos1 = self._encode_image(img1, shape1)
            out2, pos2 = self._encode_image(img2, shape2)
        return out1, out2, pos1, pos2

    def _encode_symmetrized(self, view1, view2):
        """Encode both views; interleaved mirror batches encode each image once (bit-identical)."""
        img1, img2 = view1["img"], view2["img"]
        shape1, shape2 = self._true_shape(view1), self._true_shape(view2)
        if is_symmetrized(view1, view2):
            f1, f2, p1, p2 = self._encode_image_pairs(img1[::2], img2[::2], shape1[::2], shape2[::2])
            f1, f2 = interleave(f1, f2)
            p1, p2 = interleave(p1, p2)
        else:
            f1, f2, p1, p2 = self._encode_image_pairs(img1, img2, shape1, shape2)
        return (shape1, shape2), (f1, f2), (p1, p2)

    def _decoder(self, f1, pos1, f2, pos2) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Two decoders reading each other's previous layer. Returns per side the L+1 tokens
        ``[encoder output, g_1, ..., g_{L-1}, dec_norm(g_L)]``."""
        out1, out2 = [f1], [f2]
        g1, g2 = self.decoder_embed(f1), self.decoder_embed(f2)
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2):
            g1, g2 = blk1(g1, g2, pos1, pos2)[0], blk2(g2, g1, pos2, pos1)[0]
            out1.append(g1)
            out2.append(g2)
        out1[-1] = self.dec_norm(out1[-1])
        out2[-1] = self.dec_norm(out2[-1])
        return out1, out2

    def _apply_head(self, head: nn.Module, tokens: List[torch.Tensor], true_shape: torch.Tensor):
        """The original's ``transpose_to_landscape`` as a method (so ``deepcopy`` keeps working)."""
        true_shape = true_shape.to(tokens[0].device)
        if not self.landscape_only:
            if not bool((true_shape == true_shape[0]).all()):
                raise ValueError("all items of a batch must share one true_shape when landscape_only=False")
            H, W = (int(v) for v in true_shape[0])
            return head(tokens, (H, W))
        H, W = int(true_shape.min()), int(true_shape.max())
        is_landscape = true_shape[:, 1] >= true_shape[:, 0]
        if bool(is_landscape.all()):
            return head(tokens, (H, W))
        if not bool(is_landscape.any()):
            return transposed(head(tokens, (W, H)))
        res_l = head([t[is_landscape] for t in tokens], (H, W))
        res_p = transposed(head([t[~is_landscape] for t in tokens], (W, H)))
        B = true_shape.shape[0]
        out = {}
        for k, v in res_l.items():
            full = v.new_empty((B,) + tuple(v.shape[1:]))
            full[is_landscape] = v
            full[~is_landscape] = res_p[k]
            out[k] = full
        return out

    def forward(self, view1: Dict[str, Any], view2: Dict[str, Any]):
        (shape1, shape2), (f1, f2), (p1, p2) = self._encode_symmetrized(view1, view2)
        return self.decode_and_predict(f1, p1, f2, p2, shape1, shape2)

    def decode_and_predict(self, f1, p1, f2, p2, shape1, shape2):
        """Decoders + heads from encoder tokens ``f* [B,N,E]``, positions ``p* [B,N,2]``, ``shape* [B,2]``."""
        dec1, dec2 = self._decoder(f1, p1, f2, p2)
        with torch.autocast(device_type=f1.device.type, enabled=False):
            res1 = self._apply_head(self.downstream_head1, [t.float() for t in dec1], shape1)
            res2 = self._apply_head(self.downstream_head2, [t.float() for t in dec2], shape2)
        res2["pts3d_in_other_view"] = res2.pop("pts3d")
        return res1, res2

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, Path], *, for_inference: bool = True,
                        device: Union[str, torch.device] = "cpu", **hub_kwargs) -> "AsymmetricCroCo3DStereo":
        """Load from an official ``.pth`` file, a local Hugging Face folder or a hub repo id.

        ``for_inference`` (default True, as the original's ``.pth`` path does) switches ManyAR_PatchEmbed to
        PatchEmbedDust3R and ``landscape_only`` to False: numerically identical for natural-orientation images,
        and portrait videos then work. Unlike the original this is applied on the hub path too.
        """
        return load_model(pretrained_model_name_or_path, device=device, for_inference=for_inference, **hub_kwargs)


def _short(keys: List[str], n: int = 8) -> str:
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


def build_model(kwargs: Dict[str, Any], for_inference: bool = False) -> AsymmetricCroCo3DStereo:
    """Instantiate from constructor kwargs after :func:`check_model_config`; errors are :class:`CheckpointError`."""
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"invalid model configuration {kwargs!r}: expected keyword arguments")
    kwargs = _tuplify(kwargs)
    if for_inference:
        kwargs = normalize_for_inference(kwargs)
    check_model_config(kwargs)
    try:
        return AsymmetricCroCo3DStereo(**kwargs)
    except (TypeError, ValueError, NotImplementedError, RuntimeError, AssertionError, MemoryError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"invalid model configuration {kwargs}: {why}") from None


def model_from_string(model_str: str, for_inference: bool = False) -> AsymmetricCroCo3DStereo:
    """Build (random weights) from an original constructor string, parsed safely."""
    _, kwargs = parse_model_string(model_str)
    return build_model(kwargs, for_inference=for_inference)


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
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: entries {_short(bad, 4)} of its state dict are "
                              f"not tensors; {_NOT_A_CHECKPOINT_HINT}")
    return dict(sd)


def _load_weights_into(model: "AsymmetricCroCo3DStereo", sd: Any, path: Path) -> None:
    """Strict load with the path in every message; a state dict of another network is named as such."""
    sd = check_state_dict(sd, path)
    own = model.state_dict()
    prepared = model.prepare_state_dict(sd)
    if own and not any(k in own for k in prepared):
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: none of its {len(sd)} weights belongs to the "
                              f"network (its keys start with {_short(list(sd), 3) or 'nothing'}); "
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


def _load_pth(path: Path, device, for_inference: bool) -> AsymmetricCroCo3DStereo:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        what = (f"a dict with keys {_short([str(k) for k in ckpt], 5)}" if isinstance(ckpt, dict)
                else f"a {type(ckpt).__name__}")
        raise CheckpointError(f"{path} is not a MonST3R checkpoint: expected a dict with 'args' and 'model', found "
                              f"{what}; {_NOT_A_CHECKPOINT_HINT}")
    model_str = _model_string_from_args(ckpt["args"], path)
    try:
        _, kwargs = parse_model_string(model_str)
    except SafeParseError as exc:
        raise CheckpointError(f"{path}: unusable model string ({exc})") from None
    log.info("instantiating: %s", model_str)
    try:
        model = build_model(kwargs, for_inference=for_inference)
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


def _load_folder(folder: Path, device, for_inference: bool) -> AsymmetricCroCo3DStereo:
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
        model = build_model(cfg, for_inference=for_inference)
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    _load_weights_into(model, _load_weights_file(weights), weights)
    return model.to(device).eval()


def _load_hub(repo_id: str, device, for_inference: bool, **hub_kwargs) -> AsymmetricCroCo3DStereo:
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
    model = build_model(_read_config(cfg), for_inference=for_inference)
    _load_weights_into(model, _load_weights_file(weights), weights)
    return model.to(device).eval()


def load_model(model_path: Union[str, Path], device: Union[str, torch.device] = "cpu", verbose: bool = True,
               for_inference: bool = True, **hub_kwargs) -> AsymmetricCroCo3DStereo:
    """Load an official-format ``.pth``, a Hugging Face folder or a hub repo id; returns the model in eval mode
    on ``device``. See :meth:`AsymmetricCroCo3DStereo.from_pretrained` for ``for_inference``."""
    p = Path(model_path).expanduser()
    if p.is_file():
        return _load_pth(p, device, for_inference) if p.suffix != ".safetensors" else \
            _load_folder_single(p, device, for_inference)
    if p.is_dir():
        return _load_folder(p, device, for_inference)
    s = str(model_path)
    looks_like_repo = re.fullmatch(r"[\w.-]+/[\w.-]+", s) is not None and not s.startswith((".", "/", "~"))
    if not looks_like_repo or s.endswith((".pth", ".pt", ".bin", ".safetensors")):
        raise CheckpointError(f"checkpoint not found: {model_path} (give an existing .pth file, a model folder "
                              "or a Hugging Face repo id such as " + DEFAULT_HUB_MODEL + ")")
    return _load_hub(s, device, for_inference, **hub_kwargs)


def _load_folder_single(path: Path, device, for_inference: bool) -> AsymmetricCroCo3DStereo:
    """A bare ``model.safetensors`` next to its ``config.json``."""
    return _load_folder(path.parent, device, for_inference)
