"""Optical flows of the pairs of a scene, stored compactly for the flow loss (optimizer.md 5.3 and 7).

:class:`PairFlows` holds, for the E directed edges of the scene (images of one size H x W):

- ``flow_ij`` ``[E, 2, H, W]``: flow from image i to image j of each edge; ``flow_valid_mask_i`` ``[E, 1, H, W]``
  bool forward-backward validity of it (or None);
- ``flow_ji`` / ``flow_valid_mask_j``: the other direction. When the flows of each edge and of its reverse are
  consistent (flow_ji of edge e == flow_ij of the reverse edge: always the case for computed flows) they are not
  stored: the properties materialise them on demand, and the loss reads each directed flow once from ``flow_ij``.
  Otherwise both directions live in one ``[2E, 2, HW]`` store of which ``flow_ij`` / ``flow_ji`` are views;
- ``obs`` ``[D, 2, HW]`` / ``valid`` ``[D, 1, HW]``: the stores the loss kernels read (D = E or 2E), ``rev``
  ``[E]`` the reverse edge of each edge when flow_ji is derived (None otherwise).

Built from given tensors (:meth:`PairFlows.from_user`, :meth:`PairFlows.from_tensors`) or by a flow network
(:meth:`PairFlows.from_network`); the network itself is loaded by ``flows_and_masks.py``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from monst3r.cloud_opt.edges import reverse_edge_index
from monst3r.cloud_opt.optical_flow import compute_pair_flows
from monst3r.errors import Monst3rInputError


class PairFlows:
    """Flows of every edge (see the module docstring for the layout). ``PairFlows()`` holds no flows."""

    def __init__(self, flow_ij: torch.Tensor | None = None, flow_ji: torch.Tensor | None = None,
                 valid_i: torch.Tensor | None = None, valid_j: torch.Tensor | None = None,
                 rev: torch.Tensor | None = None, obs: torch.Tensor | None = None, valid: torch.Tensor | None = None):
        self.flow_ij = flow_ij                # [E, 2, H, W]
        self.flow_valid_mask_i = valid_i      # [E, 1, H, W] bool
        self.stored_flow_ji = flow_ji         # [E, 2, H, W] or None when derived from flow_ij
        self.stored_valid_j = valid_j         # [E, 1, H, W] bool or None when derived
        self.rev = rev                        # [E] reverse edge of each edge, when flow_ji is derived
        self.obs = obs                        # [D, 2, HW] store read by the loss
        self.valid = valid                    # [D, 1, HW] bool store read by the loss (or None)

    @property
    def flow_ji(self) -> torch.Tensor | None:
        """``[E, 2, H, W]`` flow from image j to image i of each edge (a new tensor when derived from flow_ij)."""
        if self.stored_flow_ji is None and self.flow_ij is not None and self.rev is not None:
            return self.flow_ij.index_select(0, self.rev)
        return self.stored_flow_ji

    @property
    def flow_valid_mask_j(self) -> torch.Tensor | None:
        """``[E, 1, H, W]`` bool validity of ``flow_ji`` (or None)."""
        if self.stored_valid_j is None and self.flow_valid_mask_i is not None and self.rev is not None:
            return self.flow_valid_mask_i.index_select(0, self.rev)
        return self.stored_valid_j

    @classmethod
    @torch.no_grad()
    def from_tensors(cls, fij: torch.Tensor, fji: torch.Tensor | None, vi: torch.Tensor | None,
                     vj: torch.Tensor | None, edges: Sequence[tuple[int, int]], shape: tuple[int, int],
                     device: torch.device, consistent: bool | None = None) -> "PairFlows":
        """Store ``[E, 2, H, W]`` flows (``[E, 1, H, W]`` validities) compactly; ``consistent`` None: checked here,
        chunk by chunk (``fji`` may be None only when ``consistent`` is True)."""
        E = len(edges)
        H, W = shape
        rev = reverse_edge_index(edges)
        if rev is not None and consistent is None:
            rev_t = torch.tensor(rev, device=fij.device)
            step = max(1, (1 << 22) // max(H * W, 1))
            consistent = all(torch.equal(fji[a:a + step], fij.index_select(0, rev_t[a:a + step]))
                             for a in range(0, E, step))
            if consistent and vi is not None:
                consistent = all(torch.equal(vj[a:a + step], vi.index_select(0, rev_t[a:a + step]))
                                 for a in range(0, E, step))
        if rev is not None and consistent:
            flow_ij = fij.float().to(device)
            valid_i = None if vi is None else vi.bool().reshape(E, 1, H, W).to(device)
            return cls(flow_ij, None, valid_i, None, rev=torch.tensor(rev, device=device),
                       obs=flow_ij.view(E, 2, H * W), valid=None if vi is None else valid_i.view(E, 1, H * W))
        obs = torch.empty(2 * E, 2, H * W, device=device)
        obs[:E].copy_(fij.reshape(E, 2, -1))
        obs[E:].copy_(fji.reshape(E, 2, -1))
        out = cls(obs[:E].view(E, 2, H, W), obs[E:].view(E, 2, H, W), obs=obs)
        if vi is not None:
            val = torch.empty(2 * E, 1, H * W, dtype=torch.bool, device=device)
            val[:E].copy_(vi.reshape(E, 1, -1))
            val[E:].copy_(vj.reshape(E, 1, -1))
            out.valid = val
            out.flow_valid_mask_i = val[:E].view(E, 1, H, W)
            out.stored_valid_j = val[E:].view(E, 1, H, W)
        return out

    @classmethod
    def from_user(cls, flows, edges: Sequence[tuple[int, int]], shape: tuple[int, int],
                  device: torch.device) -> "PairFlows":
        """Validate and store the ``flows=(flow_ij, flow_ji[, valid_i, valid_j])`` option (``[E, 2, H, W]`` each,
        validities ``[E, 1, H, W]`` or reshapable to it)."""
        if not isinstance(flows, (list, tuple)) or len(flows) not in (2, 4):
            raise Monst3rInputError("flows must be (flow_ij, flow_ji) or (flow_ij, flow_ji, valid_i, valid_j)")
        E = len(edges)
        H, W = shape
        fij = torch.as_tensor(np.asarray(flows[0]) if not isinstance(flows[0], torch.Tensor) else flows[0])
        fji = torch.as_tensor(np.asarray(flows[1]) if not isinstance(flows[1], torch.Tensor) else flows[1])
        for name, f in (("flow_ij", fij), ("flow_ji", fji)):
            if tuple(f.shape) != (E, 2, H, W):
                raise Monst3rInputError(f"{name} must be [{E}, 2, {H}, {W}] (one flow per pair), got {tuple(f.shape)}")
        vi = vj = None
        if len(flows) == 4 and flows[2] is not None:
            vi = torch.as_tensor(flows[2]).bool().reshape(E, 1, H, W)
            vj = torch.as_tensor(flows[3]).bool().reshape(E, 1, H, W)
        return cls.from_tensors(fij.float(), fji.float(), vi, vj, edges, shape, device)

    @classmethod
    def from_network(cls, flow_model, imgs: torch.Tensor, edges: Sequence[tuple[int, int]],
                     device: torch.device) -> "PairFlows":
        """Flow network on every unordered pair once (both directions), mirrored to all directed edges.

        imgs: ``[N, H, W, 3]`` float RGB in [0, 1]; flow_model: a loaded SEA-RAFT/RAFT (``third_party.raft``).
        """
        E = len(edges)
        rev = reverse_edge_index(edges)
        unique = list(range(E)) if rev is None else [e for e in range(E) if e <= rev[e]]
        fij, fji, vi, vj = compute_pair_flows(flow_model, imgs, [edges[e] for e in unique], chunk_size=12, iters=20)
        fij, fji, vi, vj = (t.to(device) for t in (fij, fji, vi, vj))
        H, W = imgs.shape[1:3]
        vi, vj = vi.reshape(-1, 1, H, W), vj.reshape(-1, 1, H, W)
        if rev is None:
            return cls.from_tensors(fij, fji, vi, vj, edges, (H, W), device, consistent=False)
        # edge e = unique[u] gets (fij[u], fji[u]); its reverse r gets (fji[u], fij[u]): flow_ij of every edge is
        # one of the computed flows, and flow_ji of every edge is flow_ij of its reverse
        fwd = torch.tensor(unique, device=device)
        bwd = torch.tensor([rev[e] for e in unique], device=device)
        F_ij = fij.new_empty(E, 2, H, W).index_copy_(0, fwd, fij)
        V_i = vi.new_empty(E, 1, H, W).index_copy_(0, fwd, vi)
        del fij, vi
        F_ij.index_copy_(0, bwd, fji)
        V_i.index_copy_(0, bwd, vj)
        del fji, vj
        return cls.from_tensors(F_ij, None, V_i, None, edges, (H, W), device, consistent=True)
