"""The loss of ``PointCloudOptimizer`` (optimizer.md section 5) over all frames or a window of frames.

- :class:`SubProblem`: index data of one (sub-)problem (frames, pairs, flow rows, masks);
- :class:`DecodedVariables`: the decoded parameters of a (sub-)problem;
- :class:`AlignmentLoss`: the optimizer's loss methods (mixed into ``PointCloudOptimizer``): pairwise alignment
  + temporal smoothness + optical-flow consistency on static pixels (+ optional depth prior). The two heavy terms
  run through the chunked kernels of ``align_flow_kernels.py`` (gradients computed during the forward pass, pair
  data read in place), so the peak memory is the stored pair data plus a few chunk-sized buffers.

Non-batched mode: the loss kernels already process the pairs in chunks of ``chunk_size`` with only one chunk's
intermediates alive, so the non-batched mode (``batchify=False``) shares the batched code path and memory; it
differs only by the original's per-edge normalisations in faithful mode (``_per_edge_flow``, ``_make_ctx``,
``_depth_prior``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from monst3r.cloud_opt.align_flow_kernels import default_chunk_rows, ego_flow_sum, pair_align_sum
from monst3r.cloud_opt.loss_terms import depth_regularization_si_weighted
from monst3r.cloud_opt.loss_weights import ALL_DISTS
from monst3r.cloud_opt.padded_rows import ravel_pad_stack


@dataclass
class SubProblem:
    """Index data of one (sub-)problem: a range of frames and the pairs inside it (local frame indices).

    The large per-pair inputs (predictions, optical flows) are never copied: ``pred_rows`` / ``fl_rows`` select
    rows of the scene's stored buffers (None = all rows, in order) and the loss kernels gather them chunk by chunk.
    """
    n: int                      # number of frames
    start: int                  # first frame (global index of local frame 0)
    ei: torch.Tensor            # [e] local index of view 1
    ej: torch.Tensor            # [e] local index of view 2
    pred_rows: torch.Tensor | None  # [2e] rows of the scene's ``_pred_t`` / ``_stacked_conf`` (view-1 rows of the
                                    # pairs, then view-2 ones)
    norm: torch.Tensor          # [2e] normalisation of each row's weights conf_trf(conf) (total area, or area * e)
    idx: torch.Tensor           # [2e] image of each row (cat(ei, ej))
    grid: torch.Tensor          # [2, HW] (shared) or [n, 2, HW]
    edge_ids: torch.Tensor      # [e] global edge indices
    fl_src: torch.Tensor | None = None     # [D] local source frame of each directed flow pair
    fl_tgt: torch.Tensor | None = None
    fl_rows: torch.Tensor | None = None    # [D] rows of the scene's flow store (None: all rows in order)
    fl_static: torch.Tensor | None = None  # [n, HW] float 0/1, static pixels of each frame
    fl_valid: bool = False                 # also mask with the stored forward-backward validity of each row
    fl_group: torch.Tensor | None = None   # [D] 0 = i->j direction of an edge, 1 = j->i (two pooled groups)
    fl_group_rows: tuple = ()              # row indices of each non-empty group
    fl_factor: float = 1.0                 # 2 when each directed pair stands for both directions of a pair
    fl_ph: torch.Tensor | None = None      # [3, HW] homogeneous pixel grid
    dyn: torch.Tensor | None = None        # [n, HW] bool dynamic masks (depth prior)
    init_depth: torch.Tensor | None = None  # [n, HW] (depth prior)


@dataclass
class DecodedVariables:
    """Decoded variables of a (sub-)problem: depth ``[n, HW]``, image c2w R ``[n, 3, 3]`` / T ``[n, 3]``, focals
    ``[n]``, principal points ``[n, 2]``, scaled pair poses M ``[e, 3, 3]`` / t ``[e, 3]``, adaptors ``[e, 3]``."""
    depth: torch.Tensor
    R: torch.Tensor
    T: torch.Tensor
    focals: torch.Tensor
    pps: torch.Tensor
    M: torch.Tensor
    t: torch.Tensor
    adapt: torch.Tensor | None = None


class AlignmentLoss:
    """Loss methods of ``PointCloudOptimizer`` (a mixin: reads the scene's buffers, parameters and options)."""

    # ------------------------------------------------------------------------------------------------------
    # problem description (all frames, or a window)
    # ------------------------------------------------------------------------------------------------------
    def _flow_directed(self):
        """Directed flow pairs (src, tgt, group, factor) of the rows of the flow store ``_flow_obs``.

        With a symmetrized graph whose flows are consistent (flow_ji of an edge == flow_ij of its reverse) the
        i->j terms of all edges already contain every j->i term of the reverse edges, so each directed pair is
        evaluated once and counted twice (same value as the original, half the work); the store then holds
        flow_ij only. Otherwise the store holds flow_ij then flow_ji (two pooled groups).
        """
        E = self.n_edges
        if self._flow_rev is not None:
            return self._ei, self._ej, torch.zeros(E, dtype=torch.long, device=self.device), 2.0
        src, tgt = torch.cat((self._ei, self._ej)), torch.cat((self._ej, self._ei))
        group = torch.cat((torch.zeros(E, dtype=torch.long), torch.ones(E, dtype=torch.long))).to(self.device)
        return src, tgt, group, 1.0

    def _make_ctx(self, frames: range | None = None) -> SubProblem:
        """Index data for frames ``[start, end)`` (all frames when None) and the pairs inside."""
        N = self.n_imgs
        start, end = (0, N) if frames is None else (frames.start, frames.stop)
        inside = (self._ei >= start) & (self._ei < end) & (self._ej >= start) & (self._ej < end)
        eids = torch.nonzero(inside).ravel()
        ei, ej = self._ei[eids] - start, self._ej[eids] - start
        grid = self._grid[0] if self.same_size else self._grid[start:end]
        E = self.n_edges
        full = len(eids) == E
        rows = None if full else torch.cat((eids, eids + E))
        areas = torch.cat((self._edge_area_i[eids], self._edge_area_j[eids]))
        e = len(eids)
        if self.faithful and not self.batchify and not self.window_wise and not self.same_size:
            norm = areas * max(e, 1)  # the original's non-batched per-edge normalisation (only differs then)
        else:
            norm = torch.cat((self._edge_area_i[eids].sum().expand(e), self._edge_area_j[eids].sum().expand(e)))
        ctx = SubProblem(n=end - start, start=start, ei=ei, ej=ej, pred_rows=rows, norm=norm, idx=torch.cat((ei, ej)), grid=grid,
                   edge_ids=eids)
        if self.flow_loss_weight > 0 and self._flow_obs is not None:
            src, tgt, group, factor = self._flow_directed()
            keep = (src >= start) & (src < end) & (tgt >= start) & (tgt < end)
            d = torch.nonzero(keep).ravel()
            ctx.fl_rows = None if len(d) == len(src) else d
            ctx.fl_src, ctx.fl_tgt = src[d] - start, tgt[d] - start
            ctx.fl_static = (~self._dyn[start:end]).float()  # float 0/1: boolean ops are slow on CPU
            ctx.fl_valid = self.flow_use_validity and self._flow_valid is not None
            g = group[d]
            present = [k for k in (0, 1) if bool((g == k).any())]
            ctx.fl_group = torch.zeros_like(g)
            rows_of = []
            for pos, k in enumerate(present):
                sel = torch.nonzero(g == k).ravel()
                ctx.fl_group[sel] = pos
                rows_of.append(sel)
            ctx.fl_group_rows = tuple(rows_of)
            ctx.fl_factor = factor
            if grid.ndim == 2:
                ctx.fl_ph = torch.cat((grid, torch.ones_like(grid[:1])), dim=0)  # [3, HW]
        if self.depth_regularize_weight > 0 and self.init_depthmaps is not None:
            ctx.dyn = self._dyn[start:end]
            ctx.init_depth = ravel_pad_stack(self.init_depthmaps[start:end], self.max_area).to(self.device)
        return ctx

    def _ctx(self) -> SubProblem:
        if self._full_ctx is None:
            self._full_ctx = self._make_ctx()
        return self._full_ctx

    # ------------------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------------------
    def _flow_active(self, epoch: int) -> bool:
        return (self.flow_loss_weight > 0 and self.flow_ij is not None
                and epoch >= self.num_total_iter * self.flow_loss_start_epoch)

    @property
    def _per_edge_flow(self) -> bool:
        """The original's non-batched flow pooling (per directed pair, then summed / E): faithful mode only."""
        return self.faithful and not self.batchify and not self.window_wise

    def _gate(self, flow: torch.Tensor) -> torch.Tensor:
        if self.flow_loss_thre > 0:
            return torch.where(flow > self.flow_loss_thre, torch.zeros_like(flow), flow)
        return flow

    # variables -------------------------------------------------------------------------------------------
    def _make_vars(self, depth_log, pose_params, focal_params, pp_params, pps_base, pw_params, norm, adapt) -> DecodedVariables:
        """Decode raw parameters (one fused pose decoding for images and pairs)."""
        n = pose_params.shape[0]
        R, T = self._decode_poses(torch.cat((pose_params, pw_params[:, :7])))
        scale = pw_params[:, 7].exp() * norm
        focals = (focal_params.reshape(-1) / self.focal_break).exp()
        if focals.numel() == 1 and n > 1:
            focals = focals.expand(n)
        return DecodedVariables(depth=depth_log.exp(), R=R[:n], T=T[:n], focals=focals, pps=pps_base + 10 * pp_params,
                     M=R[n:] * scale[:, None, None], t=T[n:] * scale[:, None], adapt=adapt)

    def _variables(self) -> DecodedVariables:
        adapt = self.get_adaptors() if self.has_adaptors else None
        return self._make_vars(self.im_depthmaps, self._pose_params(), self.im_focals, self.im_pp, self._pp,
                               self.pw_poses, self.get_pw_norm_scale_factor(), adapt)

    # terms -----------------------------------------------------------------------------------------------
    def _chunk_rows(self) -> int:
        """Pairs per chunk of the loss kernels (``chunk_size``, or a per-device pixel budget)."""
        return default_chunk_rows(self.max_area, self.device, self.chunk_size)

    def _pair_align(self, ctx: SubProblem, X: torch.Tensor, M: torch.Tensor, t: torch.Tensor,
                    adapt: torch.Tensor | None) -> torch.Tensor:
        """Normalised alignment term l_i + l_j (optimizer.md 5.1) over the pairs of ``ctx``.

        X: ``[n, 3, HW]`` world points; M ``[e, 3, 3]`` / t ``[e, 3]``: scaled pair poses of the pairs of ``ctx``.
        Both views of every pair go through one fused, chunked kernel call (rows of view 1, then of view 2).
        """
        M2, t2 = torch.cat((M, M)), torch.cat((t, t))
        a2 = torch.cat((adapt, adapt)) if adapt is not None else None
        squared = self.dist is ALL_DISTS["l2"]
        return pair_align_sum(X, M2, t2, self._pred_t, self._row_weights(ctx), ctx.idx, rows=ctx.pred_rows,
                              adapt=a2, squared=squared, chunk=self._chunk_rows())

    def _row_weights(self, ctx: SubProblem):
        """Loss weights conf_trf(conf) / norm of rows a..b-1 of ``ctx`` (``w(a, b)``), computed when the kernel
        reaches them: a stored copy would cost as much memory as the confidences (a cheap recomputation)."""
        conf, rows, norm, img = self._stacked_conf, ctx.pred_rows, ctx.norm, ctx.idx + ctx.start

        def w(a: int, b: int) -> torch.Tensor:
            c = conf[a:b] if rows is None else conf.index_select(0, rows[a:b])
            wc = self.conf_trf(c)
            if not self.same_size:  # padded pixels weigh 0 (their raw confidence 0 would give log(0))
                wc = torch.where(self._valid.index_select(0, img[a:b]), wc, torch.zeros_like(wc))
            return wc / norm[a:b, None]
        return w

    @staticmethod
    def _intrinsics_pair(focals: torch.Tensor, pps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and K^-1 ``[n, 3, 3]`` built with one stack each (cheap in autograd)."""
        z, o = torch.zeros_like(focals), torch.ones_like(focals)
        cx, cy = pps[:, 0], pps[:, 1]
        K = torch.stack((focals, z, cx, z, focals, cy, z, z, o), dim=1).view(-1, 3, 3)
        inv_f = 1 / focals
        Kinv = torch.stack((inv_f, z, -cx * inv_f, z, inv_f, -cy * inv_f, z, z, o), dim=1).view(-1, 3, 3)
        return K, Kinv

    def _flow_parts(self, ctx: SubProblem, depth, R, T, K, Kinv):
        """Per group of directed pairs (numerator, count) of the flow loss over the pairs of ``ctx``; with the
        original's non-batched pooling (faithful) one group whose numerator is sum(num / count) over the pairs."""
        src, tgt = ctx.fl_src, ctx.fl_tgt
        Rt = R[tgt].transpose(1, 2)
        Hm = K[tgt] @ (Rt @ R[src]) @ Kinv[src]
        kt = (K[tgt] @ (Rt @ (T[src] - T[tgt])[..., None]))[..., 0]  # [D, 3]
        if ctx.fl_ph is None:
            raise RuntimeError("the flow loss needs images of one size")
        disp = 1 / (depth + 1e-6)  # [n, HW]
        if self._per_edge_flow:
            group = torch.zeros_like(src)
            group_rows = (torch.arange(len(src), device=src.device),)
            per_row = "raw" if self.faithful else "guard"  # the original: NaN for a pair without static pixels
        else:
            group, group_rows, per_row = ctx.fl_group, ctx.fl_group_rows, None
        valid = self._flow_valid if ctx.fl_valid else None
        return ego_flow_sum(Hm, kt, disp, src, self._flow_obs, ctx.fl_static, ctx.fl_ph, group=group,
                            group_rows=group_rows, obs_rows=ctx.fl_rows, valid=valid, valid_rows=ctx.fl_rows,
                            per_row=per_row, thre=self.pxl_thre, mse=self.flow_loss_fn == "mse",
                            chunk=self._chunk_rows())

    def _combine_flow(self, ctx: SubProblem, num: torch.Tensor, cnt: torch.Tensor, n_edges: int) -> torch.Tensor:
        """Flow value from per-group parts: pooled per direction group (batched formula), or the original's
        non-batched per-edge pooling summed over edges / E (faithful non-batched mode: ``num`` already holds
        sum(num / count))."""
        if self._per_edge_flow:
            return ctx.fl_factor * num.sum() / n_edges
        guard = not self.faithful
        total = num.new_zeros(())
        for g in range(len(num)):
            total = total + num[g] / (cnt[g].clamp_min(1) if guard else cnt[g])
        return ctx.fl_factor * total

    def _temporal(self, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """sum_k |R_k^T R_k+1 - I|_F + w |R_k^T (T_k+1 - T_k)| (= inverse(P_k) P_k+1, optimizer.md 5.2)."""
        if R.shape[0] < 2:
            return R.new_zeros(())
        Rt = R[:-1].transpose(1, 2)
        rel_R = Rt @ R[1:]
        rel_t = (Rt @ (T[1:] - T[:-1])[..., None])[..., 0]
        eye = torch.eye(3, device=R.device, dtype=R.dtype)
        # torch's norms have a zero subgradient at 0 (identical consecutive poses); a plain sqrt would give NaN
        rot = torch.linalg.matrix_norm(rel_R - eye)
        trans = torch.linalg.vector_norm(rel_t, dim=1)
        return (rot + self.translation_weight * trans).sum()

    def _depth_prior(self, ctx: SubProblem, depth: torch.Tensor) -> torch.Tensor:
        red = "sum" if self._per_edge_flow else "mean"
        return depth_regularization_si_weighted(depth[:, None], ctx.init_depth[:, None], ctx.dyn[:, None],
                                                faithful=self.faithful, reduction=red)

    def _loss(self, ctx: SubProblem, epoch: int, v: DecodedVariables, terms: bool = False):
        """Total loss (batched formulas) for the problem ``ctx`` given the variables ``v``."""
        X = self._world_points(v.depth, v.R, v.T, v.focals, v.pps, ctx.grid)
        align = self._pair_align(ctx, X, v.M, v.t, v.adapt)
        loss = align
        out = dict(align=align)
        if self.temporal_smoothing_weight > 0 or terms:
            temporal = self._temporal(v.R, v.T)
            out["temporal_unweighted"] = temporal
            if self.temporal_smoothing_weight > 0:
                loss = loss + self.temporal_smoothing_weight * temporal
        flow_gated = align.new_zeros(())
        if ctx.fl_src is not None and (self._flow_active(epoch) or terms) and len(ctx.fl_src):
            K, Kinv = self._intrinsics_pair(v.focals, v.pps)
            num, cnt = self._flow_parts(ctx, v.depth, v.R, v.T, K, Kinv)
            flow = self._combine_flow(ctx, num, cnt, len(ctx.ei))
            out["flow_unweighted_ungated"] = flow
            if self._flow_active(epoch):
                flow_gated = self._gate(flow)
                loss = loss + self.flow_loss_weight * flow_gated
        if self.depth_regularize_weight > 0 and ctx.init_depth is not None:
            dreg = self._depth_prior(ctx, v.depth)
            out["depth_reg"] = dreg
            loss = loss + self.depth_regularize_weight * dreg
        out["total"] = loss
        out["flow_term_as_gated"] = flow_gated
        return (loss, flow_gated, out) if terms else (loss, flow_gated)

    def forward(self, epoch: int = 9999):
        """(total loss, gated unweighted flow value) of the current parameters over all pairs."""
        return self._loss(self._ctx(), epoch, self._variables())

    @torch.no_grad()
    def loss_terms(self, epoch: int = 9999) -> dict[str, float]:
        """Unweighted terms for inspection: align, temporal_unweighted, flow_unweighted_ungated, total, ..."""
        _, _, out = self._loss(self._ctx(), epoch, self._variables(), terms=True)
        return {k: float(v) for k, v in out.items()}
