"""Parsing and validation of the network output handed to the global aligners (optimizer.md section 3).

The dict ``inference()`` returns (view1, view2, pred1, pred2, each a dict of per-pair entries stacked ``[E, ...]``
or lists of E items) -> edges, per-edge predictions, image shapes and the per-image extras of the views (images,
dynamic masks, camera poses, paths). Every user mistake raises ``Monst3rInputError`` saying what to do.

:func:`parse_scene` does all of it at once and returns a :class:`ParsedScene`: the scene's buffers in the
optimizer's padded layout, built once and read by the step before optimisation (``flows_and_masks.py``) and
then adopted by the optimizer (``BasePCOptimizer(..., parsed=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from monst3r.cloud_opt.edges import check_edges, is_symmetric_edge_set
from monst3r.cloud_opt.padded_rows import nonfinite_rows, ravel_pad_stack, stack_rows
from monst3r.errors import Monst3rInputError


def to_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def per_edge(x, E: int, name: str, dtype=None, ndim: int | None = None) -> list[torch.Tensor]:
    """A stacked ``[E, ...]`` tensor/array or a list of E items -> list of E tensors (leading 1-dims of items
    beyond ``ndim`` squeezed, e.g. ``[1, H, W, 3]`` -> ``[H, W, 3]``)."""
    if x is None:
        raise Monst3rInputError(f"missing {name} in the network output; pass the dict returned by inference()")
    if isinstance(x, (list, tuple)):
        items = [to_tensor(v, dtype) for v in x]
    else:
        t = to_tensor(x, dtype)
        items = list(t.unbind(0)) if t.ndim > 0 else []
    if len(items) != E:
        raise Monst3rInputError(f"{name} has {len(items)} entries but there are {E} image pairs; "
                                "view1, view2, pred1 and pred2 must describe the same pairs")
    if ndim is not None:
        out = []
        for v in items:
            while v.ndim > ndim and v.shape[0] == 1:
                v = v[0]
            out.append(v)
        items = out
    return items


def idx_list(idx) -> list[int]:
    if isinstance(idx, torch.Tensor):
        return [int(v) for v in idx.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(idx).reshape(-1).tolist()]


def parse_edges(view1: dict, view2: dict, pred1: dict, pred2: dict) -> tuple[list[tuple[int, int]], list[int],
                                                                           list[int]]:
    """(edges, idx1, idx2): the ``[E]`` image indices of the two views (converted to lists in place, as the
    original)."""
    for name, d in (("view1", view1), ("view2", view2), ("pred1", pred1), ("pred2", pred2)):
        if not isinstance(d, dict):
            raise Monst3rInputError(f"'{name}' must be a dict as returned by inference(), got {type(d).__name__}")
    if "idx" not in view1 or "idx" not in view2:
        raise Monst3rInputError("views need an 'idx' entry (image indices); use the output of inference()")
    idx1, idx2 = idx_list(view1["idx"]), idx_list(view2["idx"])
    if len(idx1) != len(idx2):
        raise Monst3rInputError(f"view1 has {len(idx1)} pairs and view2 {len(idx2)}; they must match")
    view1["idx"], view2["idx"] = idx1, idx2  # as the original: converted to lists in place
    return [(i, j) for i, j in zip(idx1, idx2)], idx1, idx2


def pair_predictions(pred1: dict, pred2: dict, E: int) -> tuple[list, list, list, list]:
    """Per-edge views of the inputs (no copies): points ``[H, W, 3]`` of view 1 / view 2 (in camera i) and raw
    confidences ``[H, W]``."""
    pts_i = per_edge(pred1.get("pts3d"), E, "pred1['pts3d']", None, 3)
    pts_j = per_edge(pred2.get("pts3d_in_other_view"), E, "pred2['pts3d_in_other_view']", None, 3)
    conf_i = per_edge(pred1.get("conf"), E, "pred1['conf']", None, 2)
    conf_j = per_edge(pred2.get("conf"), E, "pred2['conf']", None, 2)
    return pts_i, pts_j, conf_i, conf_j


def image_shapes(edges: Sequence[tuple[int, int]], n_imgs: int, pts_i, pts_j, conf_i, conf_j
                 ) -> list[tuple[int, int]]:
    """(H, W) of every image, checked consistent across the edges mentioning it."""
    # image shapes, consistent across edges
    shapes: list[tuple[int, int] | None] = [None] * n_imgs

    def set_shape(k, shp, what):
        if shapes[k] is None:
            shapes[k] = shp
        elif shapes[k] != shp:
            raise Monst3rInputError(f"image {k} has shape {shapes[k]} in one pair and {shp} in {what}; "
                                    "every prediction of an image must have the same size")
    for e, (i, j) in enumerate(edges):
        for pts, cf, k, nm in ((pts_i[e], conf_i[e], i, "pred1"), (pts_j[e], conf_j[e], j, "pred2")):
            if pts.ndim != 3 or pts.shape[-1] != 3:
                raise Monst3rInputError(f"{nm} pointmap of pair {e} must be [H, W, 3], got {tuple(pts.shape)}")
            if tuple(cf.shape) != tuple(pts.shape[:2]):
                raise Monst3rInputError(f"{nm} confidence of pair {e} has shape {tuple(cf.shape)} but its "
                                        f"pointmap is {tuple(pts.shape[:2])}; they must match")
            set_shape(k, tuple(pts.shape[:2]), f"pair {e}")
    return [tuple(s) for s in shapes]  # type: ignore[misc]


def view_extras(view1: dict, view2: dict, idx1: list[int], idx2: list[int], E: int,
                imshapes: list[tuple[int, int]]) -> tuple[list, list, list, list]:
    """(imgs ``[H, W, 3]``, dynamic masks ``[H, W]`` bool, camera poses ``[4, 4]``, paths) per image, None where
    no view gives it (the last edge mentioning an image wins)."""
    n_imgs = len(imshapes)
    imgs: list[torch.Tensor | None] = [None] * n_imgs
    dyn: list[torch.Tensor | None] = [None] * n_imgs
    cams: list[torch.Tensor | None] = [None] * n_imgs
    paths: list[str | None] = [None] * n_imgs
    for view, idxs in ((view1, idx1), (view2, idx2)):
        im = view.get("img")
        im_list = per_edge(im, E, "view['img']", None, 3) if im is not None else None
        dm = view.get("dynamic_mask")
        dm_list = per_edge(dm, E, "view['dynamic_mask']", None, 2) if dm is not None else None
        cp = view.get("camera_pose")
        cp_list = per_edge(cp, E, "view['camera_pose']", torch.float32, 2) if cp is not None else None
        inst = view.get("instance")
        for e, k in enumerate(idxs):
            if im_list is not None:
                t = im_list[e]
                if t.ndim == 3 and t.shape[0] == 3:
                    t = t.permute(1, 2, 0)
                if tuple(t.shape[:2]) != imshapes[k]:
                    raise Monst3rInputError(f"image {k} is {tuple(t.shape[:2])} but its predictions are "
                                            f"{imshapes[k]}; images and predictions must match")
                imgs[k] = t  # converted below, once per image (the last edge mentioning it wins)
            if dm_list is not None:
                m = dm_list[e]
                dyn[k] = m.bool() if tuple(m.shape) == imshapes[k] else None
            if cp_list is not None:
                cams[k] = cp_list[e].reshape(4, 4)
            if inst is not None and e < len(inst):
                paths[k] = str(inst[e])
    return imgs, dyn, cams, paths


def check_user_masks(masks, imshapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The ``dynamic_masks`` option -> N ``[H, W]`` bool tensors (one per image, of its size)."""
    ms = [to_tensor(m).bool() for m in (masks if isinstance(masks, (list, tuple)) else to_tensor(masks))]
    if len(ms) != len(imshapes):
        raise Monst3rInputError(f"dynamic_masks has {len(ms)} masks for {len(imshapes)} images; give one per image")
    for k, m in enumerate(ms):
        if tuple(m.shape) != imshapes[k]:
            raise Monst3rInputError(f"dynamic_masks[{k}] is {tuple(m.shape)} but image {k} is {imshapes[k]}")
    return ms


@dataclass
class ParsedScene:
    """The network output of a scene in the optimizer's padded layout (E edges, N images, A = largest H*W, each
    image raveled row-major and zero padded to A), on one device.

    edges ``[(i, j)] * E``; imshapes ``[(H, W)] * N``; ei / ej ``[E]`` long image indices of the edges;
    pred_t ``[2E, 3, A]`` channels-first points (view-1 rows of all edges, then view-2 rows, in camera i);
    conf ``[2E, A]`` raw confidences (same rows); im_conf ``[N, A]`` max raw confidence of each image over its
    edges; imgs ``[N, A, 3]`` RGB in [0, 1] (zeros without images); dyn ``[N, A]`` bool dynamic masks (user's,
    views' or none); camera_poses ``[N, 4, 4]`` or None; paths: per-image file names or None.
    """
    edges: list[tuple[int, int]]
    imshapes: list[tuple[int, int]]
    ei: torch.Tensor
    ej: torch.Tensor
    pred_t: torch.Tensor
    conf: torch.Tensor
    im_conf: torch.Tensor
    imgs: torch.Tensor
    dyn: torch.Tensor
    camera_poses: torch.Tensor | None
    paths: list
    has_images: bool
    has_view_masks: bool
    mask_source: str
    user_masks: bool

    @property
    def n_imgs(self) -> int:
        return len(self.imshapes)

    @property
    def max_area(self) -> int:
        return max(h * w for h, w in self.imshapes)

    @property
    def same_size(self) -> bool:
        return len(set(self.imshapes)) == 1

    @property
    def is_symmetrized(self) -> bool:
        return is_symmetric_edge_set(self.edges)


def parse_scene(view1: dict, view2: dict, pred1: dict, pred2: dict, dynamic_masks=None,
                device: torch.device | str = "cpu") -> ParsedScene:
    """Validate the network output and build the scene's buffers on ``device`` (see :class:`ParsedScene`);
    ``dynamic_masks``: the user's ``[N, H, W]`` bool masks (replace the views' masks) or None."""
    dev = torch.device(device)
    edges, idx1, idx2 = parse_edges(view1, view2, pred1, pred2)
    E = len(edges)
    n_imgs = check_edges(edges)
    if n_imgs < 2:
        raise Monst3rInputError(f"global alignment needs at least 2 images, got {n_imgs}")
    # per-edge views of the inputs (no copies; converted to float32 when stacked)
    pts_i, pts_j, conf_i, conf_j = pair_predictions(pred1, pred2, E)
    imshapes = image_shapes(edges, n_imgs, pts_i, pts_j, conf_i, conf_j)
    A = max(h * w for h, w in imshapes)
    # the only per-pair copies of the predictions, built chunk by chunk on the device
    pred_t = stack_rows(pts_i + pts_j, A, 3, dev)
    conf = stack_rows(conf_i + conf_j, A, 0, dev)
    del pts_i, pts_j, conf_i, conf_j
    bad = nonfinite_rows(pred_t) | nonfinite_rows(conf)
    if bool(bad.any()):
        r = int(torch.nonzero(bad.view(2, E).T.reshape(-1))[0])  # first pair, view 1 before view 2
        raise Monst3rInputError(f"{('pred1', 'pred2')[r % 2]} of pair {r // 2} contains NaN or inf values; "
                                "check the network input")
    ei = torch.tensor([i for i, _ in edges], dtype=torch.long, device=dev)
    ej = torch.tensor([j for _, j in edges], dtype=torch.long, device=dev)
    # per-image max confidence over every edge it appears in
    im_conf = torch.zeros(n_imgs, A, device=dev)
    im_conf.scatter_reduce_(0, ei[:, None].expand(-1, A), conf[:E], reduce="amax")
    im_conf.scatter_reduce_(0, ej[:, None].expand(-1, A), conf[E:], reduce="amax")
    imgs, dyn, cams, paths = view_extras(view1, view2, idx1, idx2, E, imshapes)
    imgs = [None if im is None else (im.float() * 0.5 + 0.5).clamp(0, 1) for im in imgs]
    imgs_t = ravel_pad_stack([im if im is not None else torch.zeros(*s, 3) for im, s in zip(imgs, imshapes)], A,
                             1).to(dev)
    has_view_masks = any(m is not None for m in dyn)
    masks = [m if m is not None else torch.zeros(s, dtype=torch.bool) for m, s in zip(dyn, imshapes)]
    if dynamic_masks is not None:
        masks = check_user_masks(dynamic_masks, imshapes)
        has_view_masks = True
        mask_source = "user"
    else:
        mask_source = "views" if has_view_masks else "none"
    return ParsedScene(
        edges=edges, imshapes=imshapes, ei=ei, ej=ej, pred_t=pred_t, conf=conf, im_conf=im_conf, imgs=imgs_t,
        dyn=ravel_pad_stack([m.float() for m in masks], A).bool().to(dev),
        camera_poses=torch.stack(cams).to(dev) if all(c is not None for c in cams) else None, paths=paths,
        has_images=all(im is not None for im in imgs), has_view_masks=has_view_masks, mask_source=mask_source,
        user_masks=dynamic_masks is not None)
