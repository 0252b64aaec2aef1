"""Safe parsing of the strings the original ``eval``s (model constructor strings in checkpoints; dataset and
criterion expressions on the command line).

Nothing here executes code: the string is parsed with :mod:`ast`, and only literal values, the names ``inf`` /
``nan`` (and ``np.inf``, ``math.inf``, ``torch.inf``, ``float('inf')``), tuples, lists, dicts, unary +/-, and
calls of callables from an explicit allow-list are accepted. Anything else raises :class:`SafeParseError`.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from monst3r.errors import Monst3rInputError


class SafeParseError(Monst3rInputError):
    """A string that the safe parser refuses (unknown name, code, non-literal value)."""


_CONST_NAMES = {"inf": math.inf, "nan": math.nan, "True": True, "False": False, "None": None}
_CONST_ATTRS = {("np", "inf"), ("numpy", "inf"), ("math", "inf"), ("torch", "inf"), ("np", "nan"), ("math", "nan")}
#: Longest list / tuple / string a ``*`` or ``+`` of literals may build (``[0] * 10**9`` would allocate GBs).
MAX_SEQUENCE_LEN = 10_000
#: Largest integer a dataset expression may hold outside ``seed`` arguments (sizes, counts, resolutions): the
#: original's recipes use 10_000-20_000 pairs per dataset and epoch; far larger values only end in out-of-memory.
MAX_EXPRESSION_INT = 1_000_000
#: Largest number of pairs a whole dataset expression may describe (the sampler holds one index per pair).
MAX_DATASET_LEN = 100_000_000


def _bounded_binop(op: type, left: Any, right: Any) -> Any:
    """``left <op> right`` refusing sequence repetitions / concatenations longer than :data:`MAX_SEQUENCE_LEN`
    before they are built."""
    seq = (str, list, tuple)
    if op is ast.Mult and (isinstance(left, seq) or isinstance(right, seq)):
        s, n = (left, right) if isinstance(left, seq) else (right, left)
        if isinstance(n, int) and not isinstance(n, bool) and len(s) * max(n, 0) > MAX_SEQUENCE_LEN:
            raise SafeParseError(f"a repeated literal of {len(s) * n} items is refused (at most "
                                 f"{MAX_SEQUENCE_LEN}); write the value you mean explicitly")
    if op is ast.Add and isinstance(left, seq) and isinstance(right, seq) and \
            len(left) + len(right) > MAX_SEQUENCE_LEN:
        raise SafeParseError(f"a literal of {len(left) + len(right)} items is refused (at most {MAX_SEQUENCE_LEN})")
    try:
        return _BINOPS[op](left, right)
    except ZeroDivisionError:
        raise SafeParseError("division by zero in the expression") from None
    except TypeError as exc:
        raise SafeParseError(f"unsupported operands: {exc}") from None


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.MatMult: operator.matmul, ast.FloorDiv: operator.floordiv}


class _Evaluator:
    def __init__(self, callables: Mapping[str, Callable], allow_binops: bool,
                 names: Optional[Mapping[str, Any]] = None):
        self.callables = dict(callables)
        self.allow_binops = allow_binops
        self.names = dict(names or {})

    def __call__(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, int, float, bool, type(None))):
                return node.value
            raise SafeParseError(f"unsupported constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id in _CONST_NAMES:
                return _CONST_NAMES[node.id]
            if node.id in self.names:
                return self.names[node.id]
            raise SafeParseError(f"name {node.id!r} is not allowed here")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in _CONST_ATTRS:
                return getattr(math, node.attr)
            raise SafeParseError(f"attribute {node.value.id}.{node.attr} is not allowed")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self(node.operand)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise SafeParseError("unary +/- only applies to numbers")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, (ast.Tuple, ast.List)):
            vals = [self(e) for e in node.elts]
            return tuple(vals) if isinstance(node, ast.Tuple) else vals
        if isinstance(node, ast.Dict):
            return {self(k): self(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.BinOp) and self.allow_binops and type(node.op) in _BINOPS:
            return _bounded_binop(type(node.op), self(node.left), self(node.right))
        raise SafeParseError(f"unsupported expression: {ast.dump(node)[:80]}")

    def _call(self, node: ast.Call) -> Any:
        # float('inf') / float('-inf') / float('nan')
        if isinstance(node.func, ast.Name) and node.func.id == "float" and len(node.args) == 1 and not node.keywords:
            arg = self(node.args[0])
            if isinstance(arg, str) and arg.strip().lower() in ("inf", "-inf", "+inf", "nan", "infinity", "-infinity"):
                return float(arg)
            if isinstance(arg, (int, float)):
                return float(arg)
            raise SafeParseError(f"float({arg!r}) is not allowed")
        if not isinstance(node.func, ast.Name) or node.func.id not in self.callables:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.dump(node.func)[:60]
            raise SafeParseError(f"call of {name!r} is not allowed (known: {', '.join(sorted(self.callables))})")
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise SafeParseError("*args / **kwargs are not allowed")
        args = [self(a) for a in node.args]
        kwargs = {k.arg: self(k.value) for k in node.keywords}
        return self.callables[node.func.id](*args, **kwargs)


def safe_eval(expr: str, callables: Optional[Mapping[str, Callable]] = None, allow_binops: bool = False,
              names: Optional[Mapping[str, Any]] = None) -> Any:
    """Evaluate ``expr`` made only of literals and calls of ``callables`` (name -> callable). No code runs.

    ``names`` (optional): bare names that stand for the given objects (e.g. ``L21`` in criterion strings).
    """
    if not isinstance(expr, str):
        raise SafeParseError(f"expected a string, got {type(expr).__name__}")
    _check_length(expr, "expression")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise SafeParseError(f"cannot parse {expr[:120]!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise SafeParseError(f"expression {expr[:60]!r}... is too deeply nested") from None
    try:
        return _Evaluator(callables or {}, allow_binops, names)(tree)
    except RecursionError:
        raise SafeParseError(f"expression {expr[:60]!r}... is too deeply nested") from None


#: Longest expression string accepted (the official model string has ~400 characters, the README training set
#: ~1,500); a megabyte-long string is a mistake and would only exhaust the parser.
MAX_EXPRESSION_CHARS = 20_000


def _check_length(expr: str, what: str) -> None:
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise SafeParseError(f"{what} of {len(expr):,} characters is refused (at most {MAX_EXPRESSION_CHARS:,})")


# ---------------------------------------------------------------------------------------------- model strings
MODEL_CLASS_NAMES = ("AsymmetricCroCo3DStereo",)
MODEL_KWARGS = frozenset({
    # AsymmetricCroCo3DStereo
    "output_mode", "head_type", "depth_mode", "conf_mode", "freeze", "landscape_only", "patch_embed_cls",
    # CroCoNet
    "img_size", "patch_size", "mask_ratio", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
    "dec_depth", "dec_num_heads", "mlp_ratio", "norm_im2_in_dec", "pos_embed",
})


def parse_model_string(model_str: str) -> Tuple[str, Dict[str, Any]]:
    """``"AsymmetricCroCo3DStereo(pos_embed='RoPE100', ...)"`` -> ``('AsymmetricCroCo3DStereo', kwargs)``.

    Accepts every form of the official strings (any whitespace, ``inf``, tuples/lists); rejects positional
    arguments, unknown keyword names and any other callable.
    """
    captured: Dict[str, Any] = {}

    def make(name):
        def ctor(*args, **kwargs):
            if args:
                raise SafeParseError(f"{name}(...) takes keyword arguments only in a model string")
            unknown = sorted(set(kwargs) - MODEL_KWARGS)
            if unknown:
                raise SafeParseError(f"unknown model argument(s) {unknown} in model string")
            captured.update(name=name, kwargs=kwargs)
            return captured
        return ctor

    out = safe_eval(model_str, {n: make(n) for n in MODEL_CLASS_NAMES})
    if out is not captured or "name" not in captured:
        raise SafeParseError(f"not a model constructor string: {model_str[:120]!r}")
    return captured["name"], captured["kwargs"]


# ---------------------------------------------------------------------------------- criterion / dataset strings
def _segment(expr: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(expr, node) or ast.dump(node)
    return seg if len(seg) <= 100 else seg[:97] + "..."


def check_expression(expr: str, callables: Mapping[str, Any], names: Mapping[str, Any], what: str) -> ast.AST:
    """Parse ``expr`` and reject, naming the offending part, any call of or reference to an unknown name, any
    attribute access other than the ``inf`` constants, and any construct other than literals, calls, unary +/-
    and the binary operators ``+ - * / // @``. Returns the parsed tree."""
    if not isinstance(expr, str) or not expr.strip():
        raise SafeParseError(f"empty {what}")
    text = expr.strip()
    _check_length(text, what)
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):
        raise SafeParseError(f"{what} is too deeply nested") from None
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        near = f" near {text[max(0, (exc.offset or 1) - 1):][:40]!r}" if exc.offset else ""
        raise SafeParseError(f"cannot parse {what}{where}{near}: {exc.msg}") from None
    allowed = (ast.Expression, ast.Constant, ast.Name, ast.Call, ast.keyword, ast.Tuple, ast.List, ast.Dict,
               ast.UnaryOp, ast.USub, ast.UAdd, ast.BinOp, ast.Load, ast.Attribute) + tuple(_BINOPS)
    known_calls = sorted(callables)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise SafeParseError(f"{what}: {_segment(text, node)!r} is not allowed (only literals, calls of "
                                 f"known names and + - * / @ are)")
        if isinstance(node, ast.Call):
            f = node.func
            if not isinstance(f, ast.Name):
                raise SafeParseError(f"{what}: call {_segment(text, node)!r} is not allowed")
            if f.id not in callables and f.id != "float":
                raise SafeParseError(f"{what}: unknown name {f.id!r} in {_segment(text, node)!r} "
                                     f"(known: {', '.join(known_calls)})")
        elif isinstance(node, ast.Name):
            if node.id not in callables and node.id not in names and node.id not in _CONST_NAMES \
                    and node.id != "float":
                known = sorted(set(names) | set(_CONST_NAMES) - {"nan"})
                raise SafeParseError(f"{what}: unknown name {node.id!r} (known values: {', '.join(known)}; "
                                     f"known calls: {', '.join(known_calls)})")
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and (node.value.id, node.attr) in _CONST_ATTRS):
                raise SafeParseError(f"{what}: attribute {_segment(text, node)!r} is not allowed")
    return tree


def parse_criterion(expr: str):
    """Criterion string -> loss module, e.g. ``ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)``,
    ``Regr3D_ScaleShiftInv(L21, gt_scale=True)``, ``0.5 * Regr3D(L21) + ConfLoss(...)``.

    Names: the loss classes of :data:`monst3r.training.criteria.CRITERIA` and the bare ``L21``. Errors (unknown name, wrong
    argument, not a loss) raise :class:`SafeParseError` naming the offending part.
    """
    from monst3r.training import criteria as losses

    check_expression(expr, losses.CRITERIA, losses.CRITERION_NAMES, "criterion")
    try:
        out = safe_eval(expr, losses.CRITERIA, allow_binops=True, names=losses.CRITERION_NAMES)
    except SafeParseError:
        raise
    except (TypeError, ValueError) as exc:
        raise SafeParseError(f"criterion {expr.strip()[:120]!r}: {exc}") from None
    if not isinstance(out, losses.MultiLoss):
        raise SafeParseError(f"criterion {expr.strip()[:120]!r} is not a loss (got {type(out).__name__})")
    return out
