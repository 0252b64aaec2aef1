"""Image transforms of the view datasets (spec training.md 7.5), resolvable by name from dataset expressions."""
from __future__ import annotations

from typing import Callable, Dict, Union

import torchvision.transforms as tvf

#: PIL image -> float tensor ``[3,H,W]`` in [-1, 1].
ImgNorm = tvf.Compose([tvf.ToTensor(), tvf.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
#: Colour jitter (torch global RNG, random order of the four ops) followed by :data:`ImgNorm`.
ColorJitter = tvf.Compose([tvf.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1), ImgNorm])

TRANSFORMS: Dict[str, Callable] = {"ImgNorm": ImgNorm, "ColorJitter": ColorJitter}


def resolve_transform(transform: Union[str, Callable, None]) -> Callable:
    """A transform object, or its name (``'ColorJitter'`` / ``'ImgNorm'``; the original stored strings
    unconverted). ``None`` means :data:`ImgNorm`."""
    if transform is None:
        return ImgNorm
    if isinstance(transform, str):
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; use one of {sorted(TRANSFORMS)}")
        return TRANSFORMS[transform]
    if not callable(transform):
        raise ValueError(f"transform must be callable or one of {sorted(TRANSFORMS)}, got {transform!r}")
    return transform
