"""Names of DUSt3R's static-scene datasets (ARKitScenes, BlendedMVS, Co3d, Habitat, MegaDepth, ScanNet++,
StaticThings3D, WildRGBD).

The original MonST3R accepts them in dataset expressions (they are DUSt3R's loaders, unchanged) but its recipe
does not use them, and their on-disk layouts are not part of this project's specification. They are registered
so that an expression naming them is recognised, and building one raises a clear error instead of a parse error.
"""
from __future__ import annotations

from typing import Any

from monst3r.errors import Monst3rInputError


class _NotAvailable:
    """Placeholder: constructing it raises :class:`Monst3rInputError`."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise Monst3rInputError(
            f"{type(self).__name__} (a DUSt3R static-scene dataset) is not implemented in this re-implementation; "
            "use PointOdysseyDUSt3R, TarTanAirDUSt3R, SpringDUSt3R, Waymo, SintelDUSt3R, DynamicReplicaDUSt3R or "
            "SyntheticDUSt3R (see data/prepare_training.md)")


class ARKitScenes(_NotAvailable):
    pass


class BlendedMVS(_NotAvailable):
    pass


class Co3d(_NotAvailable):
    pass


class Habitat(_NotAvailable):
    pass


class MegaDepth(_NotAvailable):
    pass


class ScanNetpp(_NotAvailable):
    pass


class StaticThings3D(_NotAvailable):
    pass


class WildRGBD(_NotAvailable):
    pass
