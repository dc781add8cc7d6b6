"""The expressions of a claim (`predict`, `define`), parsed with `ast` and evaluated by walking the
tree: nothing is ever passed to eval or exec, so a claim file read from disk cannot run code.

Allowed: numbers, quoted strings, names and dotted names (`optim.lr`, `task.sv_max`: looked up in
plain dicts, the job's resolved config and its summary; never getattr on a Python object),
subscripts by a constant (`task.steps[-1]`, `final['train/sharpness']`), arithmetic
(+ - * / // % **), comparisons, and/or/not, `a if cond else b`, and calls of the functions in
FUNCTIONS with positional arguments. Everything else (lambdas, comprehensions, imports, calls of
anything else, keyword arguments, dunder names) is refused when the claim is loaded.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FUNCTIONS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log2": math.log2, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "atan": math.atan, "atan2": math.atan2,
    "hypot": math.hypot, "floor": math.floor, "ceil": math.ceil, "abs": abs, "min": min, "max": max,
}
CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf}
MAX_LENGTH = 2000  # characters: a prediction is a formula, not a program
_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
           ast.Pow: lambda a, b: a ** b}
_COMPARE = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
            ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Not: lambda a: not a}


class ExprError(ValueError):
    """An expression that is refused (when parsed) or cannot be evaluated (missing name, math error)."""


@dataclass(frozen=True)
class Expr:
    text: str
    tree: ast.Expression
    names: tuple[str, ...]  # the dotted names it reads (`optim.lr`), in order of appearance

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The value of the expression with names looked up in `scope` (nested dicts and lists)."""
        try:
            return _eval(self.tree.body, scope)
        except ExprError:
            raise
        except (ArithmeticError, ValueError, TypeError) as e:  # sqrt(-1), 1/0, overflow
            raise ExprError(f"{self.text!r}: {type(e).__name__}: {e}") from None


def parse(text: str) -> Expr:
    """Parse and check an expression; ExprError says what is not allowed and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"{text!r}: an expression must be a non-empty string")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression of {len(text)} characters: at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        raise ExprError(f"{text!r}: not a valid expression ({type(e).__name__}: {getattr(e, 'msg', e)})") from None
    names: list[str] = []
    for node in ast.walk(tree):
        _check(node, text)
        if isinstance(node, (ast.Name, ast.Attribute)) and not _is_callee(node, tree):
            dotted = _dotted(node)
            if dotted is not None and not any(n.startswith(dotted + ".") or n == dotted for n in names):
                names.append(dotted)
    # keep only the longest chains (optim.lr, not also optim)
    names = [n for n in names if not any(m != n and m.startswith(n + ".") for m in names)]
    return Expr(text, tree, tuple(names))


_ALLOWED = (ast.Expression, ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.BinOp, ast.UnaryOp,
            ast.Compare, ast.BoolOp, ast.IfExp, ast.Call, ast.Load, ast.And, ast.Or,
            *_BINARY, *_COMPARE, *_UNARY)


def _check(node: ast.AST, text: str) -> None:
    where = f"{text!r}"
    if not isinstance(node, _ALLOWED):
        raise ExprError(f"{where}: {type(node).__name__} is not allowed; allowed: numbers, names from the config "
                        f"(optim.lr), arithmetic, comparisons, and/or/not, 'a if c else b', and calls of "
                        f"{', '.join(FUNCTIONS)}")
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)):
        raise ExprError(f"{where}: the constant {node.value!r} is not allowed (numbers and strings only)")
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    if name is not None and name.startswith("__"):
        raise ExprError(f"{where}: the name {name!r} is not allowed (no dunder names)")
    if isinstance(node, ast.Subscript) and not _constant_index(node.slice):
        raise ExprError(f"{where}: a subscript must be a constant (task.steps[-1], final['train/loss'])")
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            called = ast.unparse(node.func)
            raise ExprError(f"{where}: calling {called!r} is not allowed; allowed functions: {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExprError(f"{where}: {node.func.id}() takes positional arguments only")


def _constant_index(index: ast.AST) -> bool:
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        index = index.operand
    return isinstance(index, ast.Constant) and isinstance(index.value, (int, str))


def _is_callee(node: ast.AST, tree: ast.AST) -> bool:
    return any(isinstance(c, ast.Call) and c.func is node for c in ast.walk(tree))


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None  # an attribute of a subscript: its own chain is recorded from the Name
    return ".".join([node.id, *reversed(parts)])


def _number(value: Any, text: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{text}: {value!r} is not a number")
    return float(value)  # floats only: 10**10**10 overflows at once instead of building a huge integer


def _eval(node: ast.AST, scope: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return float(node.value) if isinstance(node.value, int) else node.value
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise ExprError(f"{node.id!r}: unknown name; known here: {', '.join(sorted(scope))}")
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, scope)
        if not isinstance(base, Mapping) or node.attr not in base:
            keys = f"; its keys: {', '.join(map(str, base))}" if isinstance(base, Mapping) else ""
            raise ExprError(f"{ast.unparse(node)!r}: no such key{keys}")
        return base[node.attr]
    if isinstance(node, ast.Subscript):
        base, index = _eval(node.value, scope), ast.literal_eval(node.slice)
        try:
            if isinstance(base, Mapping) or (isinstance(base, list) and isinstance(index, int)):
                return base[index]
        except (KeyError, IndexError):
            pass
        raise ExprError(f"{ast.unparse(node)!r}: no such entry")
    if isinstance(node, ast.BinOp):
        text = ast.unparse(node)
        return _BINARY[type(node.op)](_number(_eval(node.left, scope), text), _number(_eval(node.right, scope), text))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, scope)
        return _UNARY[type(node.op)](value if isinstance(node.op, ast.Not) else _number(value, ast.unparse(node)))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, scope) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, scope) else node.orelse, scope)
    if isinstance(node, ast.Call):
        args = [_number(_eval(a, scope), ast.unparse(node)) for a in node.args]
        return FUNCTIONS[node.func.id](*args)
    raise ExprError(f"{type(node).__name__} is not allowed")  # unreachable after parse()
