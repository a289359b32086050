"""Search constraints: small arithmetic/boolean expressions over parameter names, evaluated by a whitelist AST
walker (no package for safe expression evaluation is installed; `eval` on config text is not acceptable).

The walker is bounded so that no constraint can hang validation or the DAG build: exponents at most MAX_EXPONENT (a
constant one is refused when parsed, a computed one makes the candidate fail the constraint) and arithmetic on
numbers only (no `'a' * 10**9`).
"""

from __future__ import annotations

import ast
import math
import operator

MAX_EXPONENT = 64  # |b| in a ** b: 10 ** 10 ** 10 would take longer than the heat death of the study


class SearchError(ValueError):
    """A bad search block; the message names the key below `search` (`constraints: ...`)."""


def _pow(a, b):
    """a ** b with |b| <= MAX_EXPONENT and an integer result of at most 1024 bits (nested powers grow fast)."""
    if abs(b) > MAX_EXPONENT:
        raise OverflowError(f"exponent {b} is above {MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0 and math.log2(abs(a)) * b > 1024:
        raise OverflowError("power above 2 ** 1024")
    return operator.pow(a, b)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCS = {"min": min, "max": max, "abs": abs, "log2": math.log2, "sqrt": math.sqrt}


def _names(tree) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCS)


def parse_constraint(text: str, known: set[str]):
    """Parse one constraint; raise SearchError for syntax outside the whitelist or an unknown name."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise SearchError(f"{text!r} is not an expression ({e.msg})") from None
    except ValueError as e:  # e.g. an integer literal longer than Python converts
        raise SearchError(f"{text!r} is not an expression ({e})") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
               ast.Compare, ast.Name, ast.Load, ast.Constant, ast.Call, *_BINOPS, *_CMPOPS)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise SearchError(f"{text!r}: {type(node).__name__} is not allowed (arithmetic, comparisons, and/or/not, "
                              f"{', '.join(_FUNCS)})")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            raise SearchError(f"{text!r}: only the functions {', '.join(_FUNCS)} may be called")
        if isinstance(node, ast.Call) and node.keywords:
            raise SearchError(f"{text!r}: functions take no keyword arguments")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
                and _is_number(node.right.value) and abs(node.right.value) > MAX_EXPONENT:
            raise SearchError(f"{text!r}: exponent {node.right.value} is above {MAX_EXPONENT}")
    for node in ast.walk(tree):  # a power of constants is computed now: one out of bounds is refused here
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _names(node):
            try:
                _eval(node, {})
            except OverflowError as e:
                raise SearchError(f"{text!r}: {ast.unparse(node)}: {e}") from None
            except (ZeroDivisionError, ValueError, TypeError):
                pass
    unknown = _names(tree) - known
    if unknown:
        raise SearchError(f"{text!r}: unknown name {sorted(unknown)[0]!r} (parameters: {', '.join(sorted(known))})")
    return tree


def _eval(node, env: dict):
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, env) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else +v)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if not (_is_number(left) and _is_number(right)):  # no 'a' * 10**9
            raise TypeError("arithmetic on numbers only")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*(_eval(a, env) for a in node.args))
    raise SearchError(f"cannot evaluate {type(node).__name__}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float))  # bools too


def satisfies(trees, env: dict) -> bool:
    try:
        return all(bool(_eval(t, env)) for t in trees)
    except (ZeroDivisionError, ValueError, TypeError, OverflowError):
        return False  # e.g. log2(0): the candidate is outside the constraint's domain
