"""Dataset expressions and data loaders (spec training.md 6).

``parse_dataset_expression("10_000 @ PointOdysseyDUSt3R(dset='train', ...) + 5_000 @ TarTanAirDUSt3R(...)")``
builds the dataset without ``eval``: the string is parsed with :mod:`ast` and may only contain integer / float /
string / bool / None literals, lists, tuples, the transform names ``ColorJitter`` / ``ImgNorm``, keyword calls of
the dataset classes of :data:`DATASET_NAMES`, ``N @ dataset``, ``k * dataset`` and ``dataset + dataset``.
Anything else raises :class:`monst3r.utils.parsing.SafeParseError` naming the offending part.
"""
from __future__ import annotations

import ast
import importlib
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from monst3r.datasets.base import TRANSFORMS, EasyDataset
from monst3r.errors import Monst3rInputError
from monst3r.utils.parsing import MAX_DATASET_LEN, MAX_EXPRESSION_INT, SafeParseError, check_expression, safe_eval

log = logging.getLogger(__name__)

#: Dataset names usable in an expression -> ``module:Class`` (imported on first use).
DATASET_NAMES: Dict[str, str] = {
    "PointOdysseyDUSt3R": "monst3r.datasets.pointodyssey:PointOdysseyDUSt3R",
    "TarTanAirDUSt3R": "monst3r.datasets.tartanair:TarTanAirDUSt3R",
    "SpringDUSt3R": "monst3r.datasets.spring:SpringDUSt3R",
    "SintelDUSt3R": "monst3r.datasets.sintel:SintelDUSt3R",
    "DynamicReplicaDUSt3R": "monst3r.datasets.dynamic_replica:DynamicReplicaDUSt3R",
    "Waymo": "monst3r.datasets.waymo:Waymo",
    "SyntheticDUSt3R": "monst3r.datasets.synthetic_pairs:SyntheticDUSt3R",
    "ARKitScenes": "monst3r.datasets.dust3r_datasets:ARKitScenes",
    "BlendedMVS": "monst3r.datasets.dust3r_datasets:BlendedMVS",
    "Co3d": "monst3r.datasets.dust3r_datasets:Co3d",
    "Habitat": "monst3r.datasets.dust3r_datasets:Habitat",
    "MegaDepth": "monst3r.datasets.dust3r_datasets:MegaDepth",
    "ScanNetpp": "monst3r.datasets.dust3r_datasets:ScanNetpp",
    "StaticThings3D": "monst3r.datasets.dust3r_datasets:StaticThings3D",
    "WildRGBD": "monst3r.datasets.dust3r_datasets:WildRGBD",
}


def dataset_class(name: str) -> type:
    """The class registered under ``name`` (imported lazily)."""
    module, cls = DATASET_NAMES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _constructor(name: str) -> Callable[..., EasyDataset]:
    def build(*args: Any, **kwargs: Any) -> EasyDataset:
        if args:
            raise SafeParseError(f"dataset expression: {name}(...) takes keyword arguments only "
                                 f"(got positional {args!r})")
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        try:
            return dataset_class(name)(**kwargs)
        except Monst3rInputError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise SafeParseError(f"dataset expression: {name}({shown[:200]}): {exc}") from None
        except MemoryError:
            raise SafeParseError(f"dataset expression: {name}({shown[:200]}) needs more memory than this machine "
                                 "has; use smaller sizes") from None
    return build


def _check_structure(text: str, node: ast.AST) -> None:
    """``N @ ds`` / ``k * ds`` need an integer literal on the left and a dataset on the right; ``+`` joins
    datasets; the whole expression must be a dataset."""
    seg = ast.get_source_segment(text, node) or ""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, (ast.MatMult, ast.Mult)):
            op = "@" if isinstance(node.op, ast.MatMult) else "*"
            left = node.left
            if not (isinstance(left, ast.Constant) and isinstance(left.value, int) and not isinstance(left.value, bool)
                    and left.value > 0):
                raise SafeParseError(f"dataset expression: {seg[:100]!r}: the left side of {op} must be a positive "
                                     f"integer (e.g. 10_000 @ PointOdysseyDUSt3R(...))")
            _check_structure(text, node.right)
        elif isinstance(node.op, ast.Add):
            _check_structure(text, node.left)
            _check_structure(text, node.right)
        else:
            raise SafeParseError(f"dataset expression: operator in {seg[:100]!r} is not allowed (use +, @ or *)")
    elif isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in DATASET_NAMES):
            raise SafeParseError(f"dataset expression: {seg[:100]!r} is not a dataset "
                                 f"(known: {', '.join(sorted(DATASET_NAMES))})")
    else:
        raise SafeParseError(f"dataset expression: {seg[:100]!r} is not a dataset "
                             f"(expected e.g. 1000 @ TarTanAirDUSt3R(...))")


def _check_sizes(text: str, tree: ast.AST) -> None:
    """Refuse integers above :data:`MAX_EXPRESSION_INT` (except in ``*seed*`` keyword arguments) before anything
    is built: ``100000000000 @ ds`` or ``num_scenes=10**12`` would otherwise exhaust the memory (not in the
    original, which evaluated the string as is)."""
    seeds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg and "seed" in node.arg:
            seeds.update(id(n) for n in ast.walk(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
                not isinstance(node.value, bool) and id(node) not in seeds and abs(node.value) > MAX_EXPRESSION_INT \
                and node.value != float("inf"):
            raise SafeParseError(f"dataset expression: {node.value:,} is too large (numbers other than seeds are "
                                 f"limited to {MAX_EXPRESSION_INT:,}; e.g. 10_000 @ PointOdysseyDUSt3R(...))")


def check_dataset_expression(expr: str) -> None:
    """The syntax, size and structure checks of :func:`parse_dataset_expression` without building anything
    (no dataset folder is read): lets an entry point refuse a bad ``--train_dataset`` before the slow steps."""
    tree = check_expression(expr, DATASET_NAMES, TRANSFORMS, "dataset expression")
    _check_sizes(expr.strip(), tree)
    try:
        _check_structure(expr.strip(), tree.body)
    except RecursionError:
        raise SafeParseError("dataset expression is too deeply nested") from None


def parse_dataset_expression(expr: str) -> EasyDataset:
    """Build the dataset an expression describes (see module docstring). Missing dataset folders raise
    :class:`Monst3rInputError` naming the preparation script."""
    if isinstance(expr, EasyDataset):
        return expr
    check_dataset_expression(expr)
    ds = safe_eval(expr, {n: _constructor(n) for n in DATASET_NAMES}, allow_binops=True, names=TRANSFORMS)
    if not isinstance(ds, EasyDataset):
        raise SafeParseError(f"dataset expression {expr.strip()[:100]!r} does not describe a dataset")
    if len(ds) > MAX_DATASET_LEN:
        raise SafeParseError(f"dataset expression {expr.strip()[:100]!r} describes {len(ds):,} pairs, more than the "
                             f"{MAX_DATASET_LEN:,} a sampler can index; use N @ ... with a smaller N")
    return ds


def split_top_level_terms(expr: str) -> List[str]:
    """The ``+``-separated terms of an expression (syntax-aware: a ``+`` inside a string does not split)."""
    text = expr.strip()
    tree = check_expression(text, DATASET_NAMES, TRANSFORMS, "dataset expression")
    terms: List[ast.AST] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            walk(node.left)
            walk(node.right)
        else:
            terms.append(node)

    walk(tree.body)
    return [ast.get_source_segment(text, t) for t in terms]


def name_of_test_set(term: str, dataset: EasyDataset) -> str:
    """Logging name of a test set: the text before the first ``(`` plus ``_stride<list>`` when the (wrapped)
    dataset has strides, e.g. ``1000 @ PointOdysseyDUSt3R_stride[1, 2, 3]``."""
    name = term.split("(")[0].strip()
    inner = getattr(dataset, "dataset", dataset)
    if hasattr(inner, "strides"):
        name += f"_stride{list(inner.strides)}"
    return name


def _dist_info() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def get_data_loader(dataset, batch_size: int, num_workers: int = 8, shuffle: bool = True, drop_last: bool = True,
                    pin_mem: bool = True, world_size: Optional[int] = None, rank: Optional[int] = None
                    ) -> DataLoader:
    """DataLoader over a dataset or an expression. Shuffled loaders use the dataset's batched aspect-ratio
    sampler; otherwise a ``DistributedSampler`` when torch.distributed is initialised, else a sequential one.
    ``pin_mem`` applies only when CUDA is available."""
    if isinstance(dataset, str):
        dataset = parse_dataset_expression(dataset)
    ws, rk = _dist_info()
    world_size = ws if world_size is None else world_size
    rank = rk if rank is None else rank
    try:
        sampler = dataset.make_sampler(batch_size, shuffle=shuffle, world_size=world_size, rank=rank,
                                       drop_last=drop_last)
    except (AttributeError, NotImplementedError):
        if world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                         drop_last=drop_last)
        elif shuffle:
            sampler = RandomSampler(dataset)
        else:
            sampler = SequentialSampler(dataset)
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, num_workers=num_workers,
                      pin_memory=pin_mem and torch.cuda.is_available(), drop_last=drop_last)


def build_test_loaders(expr: str, batch_size: int, num_workers: int = 8, world_size: Optional[int] = None,
                       rank: Optional[int] = None) -> Dict[str, DataLoader]:
    """One sequential loader per ``+``-term of ``expr`` (each term built separately), keyed by
    :func:`name_of_test_set`. Each test set must have exactly one resolution."""
    loaders: Dict[str, DataLoader] = {}
    for term in split_top_level_terms(expr):
        ds = parse_dataset_expression(term)
        if len(ds._resolutions) != 1:
            raise Monst3rInputError(f"test set {term.split('(')[0].strip()!r} must have exactly one resolution, "
                                    f"got {ds._resolutions}")
        loaders[name_of_test_set(term, ds)] = get_data_loader(ds, batch_size, num_workers, shuffle=False,
                                                           drop_last=False, world_size=world_size, rank=rank)
    return loaders
