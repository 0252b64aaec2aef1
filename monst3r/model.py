"""``AsymmetricCroCo3DStereo``: the MonST3R / DUSt3R two-view network (checkpoint loading: :mod:`monst3r.model_loading`,
bound to this class here as :func:`load_model`, :func:`build_model`, :func:`model_from_string`).

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

import copy
import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from croco.models.croco import CroCoNet
from monst3r.heads import head_factory
from monst3r.patch_embed import get_patch_embed
from monst3r.model_loading import (DEFAULT_HUB_MODEL, OFFICIAL_MODEL_STRING, CheckpointError, build_network,
                                   check_model_config, check_state_dict, load_checkpoint_model,
                                   normalize_for_inference, short_list)
from monst3r.utils.module_setup import fill_default_args, freeze_all_params
from monst3r.utils.pair_batches import interleave, is_symmetrized, transposed
from monst3r.utils.parsing import MODEL_KWARGS, parse_model_string

log = logging.getLogger(__name__)
inf = math.inf

_ALIAS_RE = re.compile(r"^(?P<pre>.*\.scratch\.)layer(?P<i>[1-4])_rn\.weight$")


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
                + (f"missing keys {short_list(missing)}" if missing else "")
                + ("; " if missing and unexpected else "")
                + (f"unexpected keys {short_list(unexpected)}" if unexpected else "")
                + " (is this a MonST3R/DUSt3R checkpoint for this configuration?)")
        bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
        if bad:
            raise CheckpointError(f"checkpoint shapes do not match the model: {short_list(bad)}")
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


def build_model(kwargs: Dict[str, Any], for_inference: bool = False) -> AsymmetricCroCo3DStereo:
    """Instantiate from constructor kwargs after :func:`check_model_config`; errors are :class:`CheckpointError`."""
    return build_network(AsymmetricCroCo3DStereo, kwargs, for_inference=for_inference)


def model_from_string(model_str: str, for_inference: bool = False) -> AsymmetricCroCo3DStereo:
    """Build (random weights) from an original constructor string, parsed safely."""
    _, kwargs = parse_model_string(model_str)
    return build_model(kwargs, for_inference=for_inference)


def load_model(model_path: Union[str, Path], device: Union[str, torch.device] = "cpu", verbose: bool = True,
               for_inference: bool = True, **hub_kwargs) -> AsymmetricCroCo3DStereo:
    """Load an official-format ``.pth``, a Hugging Face folder or a hub repo id; returns the model in eval mode
    on ``device``. The original's signature: ``verbose`` only controls logging (the constructor string of a
    ``.pth`` is logged when True). See :meth:`AsymmetricCroCo3DStereo.from_pretrained` for ``for_inference`` and
    :func:`monst3r.model_loading.load_checkpoint_model` for the formats."""
    return load_checkpoint_model(AsymmetricCroCo3DStereo, model_path, device=device, verbose=verbose,
                                 for_inference=for_inference, **hub_kwargs)


__all__ = ["AsymmetricCroCo3DStereo", "CheckpointError", "DEFAULT_HUB_MODEL", "OFFICIAL_MODEL_STRING", "build_model",
           "check_model_config", "check_state_dict", "load_model", "model_from_string", "normalize_for_inference"]
