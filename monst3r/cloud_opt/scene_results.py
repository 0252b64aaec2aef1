"""Results and writers of a scene (optimizer.md section 12): ``result()`` builds the
:class:`~monst3r.result.Reconstruction`; ``save_*`` write the original's result files through ``monst3r.io``.
A mixin of ``BasePCOptimizer`` (reads its getters and buffers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from monst3r.utils.geometry import c2w_to_tumpose


class SceneResults:
    """``get_tum_poses``, ``result`` and the ``save_*`` writers."""

    def get_tum_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(``[N, 7]`` float64 rows x y z qw qx qy qz, timestamps ``[N]`` = 0, 1, ...)."""
        poses = self.get_im_poses().detach().cpu().numpy()
        return np.stack([c2w_to_tumpose(p) for p in poses]), np.arange(len(poses), dtype=np.float64)

    @torch.no_grad()
    def result(self, mask_source: str = "used", include_prev: bool | None = None):
        """Build the :class:`~monst3r.result.Reconstruction` of the current state.

        mask_source: 'used' (default: the masks the flow loss used, i.e. the union with SAM2 when it ran) or
        'sam2_only' (the original's ``save_dynamic_masks``, bug 14.7).
        include_prev: keep the frames re-used from a previous window result (default: dropped after
        ``clean_prev_results()``).
        """
        from monst3r.result import Reconstruction
        c2w = self.get_im_poses().detach().float().cpu().numpy()
        K = self.get_intrinsics().detach().float().cpu().numpy()

        def per_image(flat: torch.Tensor, dtype=np.float32) -> list[np.ndarray]:
            """Padded ``[N, maxHW, ...]`` buffer -> N host arrays ``[H, W, ...]`` (one device-to-host copy)."""
            host = flat.detach().cpu().numpy()
            return [host[k, :h * w].reshape(h, w, *host.shape[2:]).astype(dtype, copy=False)
                    for k, (h, w) in enumerate(self.imshapes)]
        depths = per_image(self.get_depthmaps(raw=True).float())
        confs = per_image(self._im_conf.float())
        init = per_image(self._init_conf.float())
        masks = per_image(self._dyn, bool)
        sam2 = getattr(self, "sam2_dynamic_masks", None)
        sam2_np = None if sam2 is None else [m.detach().cpu().numpy().astype(bool) for m in sam2]
        if mask_source == "sam2_only" and sam2_np is not None:
            masks = sam2_np
        rgb = per_image(self._imgs.float())
        meta = dict(source=type(self).__name__, image_paths=list(self.img_pathes), mask_source=self.mask_source,
                    sam2=getattr(self, "sam2_status", "off"), faithful=self.faithful)
        if self.history["loss"]:
            meta["final_loss"] = float(self.history["loss"][-1])
        rec = Reconstruction(poses=c2w, intrinsics=K, depths=depths, confs=confs, init_confs=init,
                             dynamic_masks=masks, rgb=rgb, meta=meta, sam2_masks=sam2_np)
        n_prev = getattr(self, "n_prev_frames", 0)
        drop = getattr(self, "_prev_cleaned", False) if include_prev is None else not include_prev
        if n_prev and drop:
            rec = rec.subset(slice(n_prev, None))
        return rec

    def _out_path(self, path, default_name: str) -> Path:
        p = Path(path)
        return p / default_name if p.suffix == "" else p

    def _save_field(self, field: str, write, *args, **result_kw):
        """Write the ``field`` of ``self.result(**result_kw)`` with ``write(value, *args)``; returns the value."""
        value = getattr(self.result(**result_kw), field)
        write(value, *args)
        return value

    def save_tum_poses(self, path):
        """Write ``pred_traj.txt`` (TUM: t x y z qw qx qy qz); ``path`` is a file or a folder."""
        from monst3r import io
        return self._save_field("poses", io.write_tum_poses, self._out_path(path, io.TRAJ_FILE))

    def save_focals(self, path):
        from monst3r import io
        return self._save_field("focals", io.write_focals, self._out_path(path, io.FOCAL_FILE))

    def save_intrinsics(self, path):
        from monst3r import io
        return self._save_field("intrinsics", io.write_intrinsics, self._out_path(path, io.INTRINSICS_FILE))

    def save_conf_maps(self, path):
        from monst3r import io
        return self._save_field("confs", io.write_conf_maps, path, io.CONF_PATTERN)

    def save_init_conf_maps(self, path):
        from monst3r import io
        return self._save_field("init_confs", io.write_conf_maps, path, io.INIT_CONF_PATTERN)

    def save_rgb_imgs(self, path):
        from monst3r import io
        return self._save_field("rgb", io.write_rgb, path)

    def save_dynamic_masks(self, path, mask_source: str | None = None):
        """Write ``dynamic_mask_<i>.png``. Default: the masks the loss used; the original wrote the SAM2-only
        masks when SAM2 ran (``mask_source='sam2_only'``, automatically in faithful mode)."""
        from monst3r import io
        src = mask_source or ("sam2_only" if self.faithful else "used")
        return self._save_field("dynamic_masks", io.write_dynamic_masks, path, mask_source=src)

    def save_depth_maps(self, path):
        from monst3r import io
        return self._save_field("depths", io.write_depth_maps, path)
