"""Random token masking of CroCo pre-training (unused by MonST3R, kept for API completeness)."""
import torch
from torch import nn


class RandomMask(nn.Module):
    """``(x [B, N, C]) -> mask [B, N] bool`` with ``int(N * mask_ratio)`` True entries per row."""

    def __init__(self, num_patches: int, mask_ratio: float):
        super().__init__()
        self.num_patches = num_patches
        self.num_mask = int(mask_ratio * num_patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(x.size(0), self.num_patches, device=x.device)
        return torch.argsort(noise, dim=1) < self.num_mask
