"""Datasets: procedural synthetic scenes (:mod:`monst3r.datasets.synthetic`) and the training datasets
(:mod:`monst3r.datasets.loader` and one module per dataset; building blocks in :mod:`monst3r.datasets.base`).

``get_data_loader``, ``parse_dataset_expression``, ``build_test_loaders`` and the dataset classes named in
``monst3r.datasets.loader.DATASET_NAMES`` are importable from here; they load lazily, so importing the synthetic
generator stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_LOADER_NAMES = ("get_data_loader", "parse_dataset_expression", "build_test_loaders", "DATASET_NAMES")


def __getattr__(name: str) -> Any:
    if name in _LOADER_NAMES:
        return getattr(importlib.import_module("monst3r.datasets.loader"), name)
    loader = importlib.import_module("monst3r.datasets.loader")
    if name in loader.DATASET_NAMES:
        return loader.dataset_class(name)
    raise AttributeError(f"module 'monst3r.datasets' has no attribute {name!r}")
