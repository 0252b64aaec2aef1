"""Deterministic weights of the golden test models (recipe in shared/golden/model/README.md).

Per state-dict key: canonical key (``scratch.layer{i}_rn.`` -> ``scratch.layer_rn.{i-1}.``), seed
``crc32(canonical) ^ 20241007``, ``RandomState(seed).uniform(-1, 1, shape)`` in float64, scaled
(ndim>=2: ``sqrt(3/fan_in)``, x0.125 for ``dpt.head.4.weight``; 1-D bias: 0.05; other 1-D: ``1 + 0.1 u``), float32.
"""
import math
import re
import zlib

import numpy as np
import torch

BASE_SEED = 20241007
_ALIAS = re.compile(r"scratch\.layer([1-4])_rn\.")


def canonical_key(key: str) -> str:
    return _ALIAS.sub(lambda m: "scratch.layer_rn.%d." % (int(m.group(1)) - 1), key)


def gen_tensor(key: str, shape) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    ckey = canonical_key(key)
    u = np.random.RandomState((zlib.crc32(ckey.encode()) ^ BASE_SEED) & 0xFFFFFFFF).uniform(-1.0, 1.0, size=shape)
    if len(shape) >= 2:
        w = u * math.sqrt(3.0 / int(np.prod(shape[1:])))
        if ckey.endswith("dpt.head.4.weight"):
            w = w * 0.125
    elif len(shape) == 1:
        w = 0.05 * u if ckey.endswith(".bias") else 1.0 + 0.1 * u
    else:
        w = u
    return np.ascontiguousarray(w.astype(np.float32))


def golden_state_dict(manifest: dict) -> dict:
    return {e["key"]: torch.from_numpy(gen_tensor(e["key"], e["shape"])) for e in manifest["state_dict"]}
