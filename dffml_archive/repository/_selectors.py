"""Selectors: find images by backend, config values and metadata.

A selector is a Python-like boolean expression, parsed with :mod:`ast` and
evaluated by this module (never by ``eval``) over each version's fields::

    entrypoint == "slr_archive" and Accuracy > 0.8 and "experience" in features
    config.predict.name == "salary" or tags contains "production"

* names: ``name``, ``namespace``, ``version``, ``tags``, ``comment``,
  ``created`` (UNIX seconds), ``user``, ``host``, ``size``, ``entrypoint``,
  ``upstream``, ``features`` (the feature names), ``config.OPTION``,
  ``metadata.KEY`` (or ``metadata["any key"]``); any other bare name is a
  user metadata key (``Accuracy``);
* ``==  !=  <  <=  >  >=  in  not in  contains``, ``and  or  not``,
  parentheses, strings, numbers, ``True``/``False``/``None``, lists;
* a field an image lacks is ``None``; comparing values of different kinds
  (a number with a string, anything with ``None`` except by ``==``/``!=``)
  is false, never an error.
"""
import ast
import io
import operator
import tokenize
from typing import Any, Callable, Dict

from ..errors import BadReferenceError, shown

FIELDS = (
    "name", "namespace", "version", "tags", "comment", "created", "user", "host", "size",
    "entrypoint", "upstream", "features", "config", "metadata",
)

_COMPARISONS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def _bad(expression: str, why: str) -> BadReferenceError:
    return BadReferenceError(
        shown(expression), f"is not a selector: {why}",
        hint='e.g. \'entrypoint == "slr_archive" and Accuracy > 0.8 and '
        '"experience" in features\'',
    )


def _in(item, container) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, (list, tuple)):
        return any(_same(item, value) for value in container)
    if isinstance(container, dict):
        return item in container
    return False


def _same(left, right) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def _compare(op, left, right) -> bool:
    if op in (ast.Eq, ast.NotEq):
        equal = _same(left, right)
        return equal if op is ast.Eq else not equal
    if op is ast.In:
        return _in(left, right)
    if op is ast.NotIn:
        return not _in(left, right)
    numbers = (int, float)
    comparable = (
        isinstance(left, numbers) and isinstance(right, numbers)
        and not isinstance(left, bool) and not isinstance(right, bool)
    ) or (isinstance(left, str) and isinstance(right, str))
    return comparable and _COMPARISONS[op](left, right)


def compile_selector(expression: str) -> Callable[[Dict[str, Any]], bool]:
    """A predicate over a version's fields (see :func:`fields_of`)."""
    if not isinstance(expression, str) or not expression.strip():
        raise _bad(str(expression), "it is empty")
    try:
        tree = ast.parse(_contains_as_operator(expression), mode="eval")
    except (SyntaxError, tokenize.TokenError, ValueError) as error:
        where = getattr(error, "offset", None)
        raise _bad(expression, f"syntax error at column {where}" if where else "syntax error") from None
    return _compile(expression, tree.body)


def _contains_as_operator(expression: str) -> str:
    """``tags contains "x"`` reads better than ``"x" in tags``: the word
    becomes ``@`` (a token, so a string holding it is left alone)."""
    tokens = tokenize.generate_tokens(io.StringIO(expression).readline)
    return tokenize.untokenize(
        (tokenize.OP, "@") if (kind == tokenize.NAME and text == "contains") else (kind, text)
        for kind, text, *_ in tokens
    )


def _compile(expression: str, node) -> Callable[[Dict[str, Any]], Any]:
    if isinstance(node, ast.BoolOp):
        parts = [_compile(expression, value) for value in node.values]
        if isinstance(node.op, ast.And):
            return lambda fields: all(part(fields) for part in parts)
        return lambda fields: any(part(fields) for part in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _compile(expression, node.operand)
        return lambda fields: not inner(fields)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _compile(expression, node.operand)
        return lambda fields: _negate(inner(fields))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):  # contains
        container, item = _compile(expression, node.left), _compile(expression, node.right)
        return lambda fields: _in(item(fields), container(fields))
    if isinstance(node, ast.Compare):
        return _compile_comparison(expression, node)
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda fields: value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_compile(expression, item) for item in node.elts]
        return lambda fields: [item(fields) for item in items]
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
        path = _field_path(expression, node)
        return lambda fields: _lookup(fields, path)
    raise _bad(expression, f"{type(node).__name__} is not allowed")


def _compile_comparison(expression, node):
    operands = [_compile(expression, node.left)] + [
        _compile(expression, item) for item in node.comparators
    ]
    ops = []
    for op in node.ops:
        if type(op) not in _COMPARISONS and not isinstance(op, (ast.In, ast.NotIn)):
            raise _bad(expression, f"{type(op).__name__} is not a comparison it knows")
        ops.append(type(op))

    def compare(fields):
        values = [operand(fields) for operand in operands]
        return all(
            _compare(op, values[i], values[i + 1]) for i, op in enumerate(ops)
        )

    return compare


def _negate(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return -value
    return None


def _field_path(expression, node) -> tuple:
    if isinstance(node, ast.Name):
        if node.id in ("True", "False", "None"):  # Python 3.8 parses these as constants
            raise _bad(expression, f"{node.id} cannot be a field")
        if node.id in FIELDS:
            return (node.id,)
        return ("metadata", node.id)  # a bare name is a metadata key: Accuracy > 0.8
    if isinstance(node, ast.Attribute):
        return _field_path(expression, node.value) + (node.attr,)
    if isinstance(node, ast.Subscript):
        key = node.slice.value if isinstance(node.slice, ast.Index) else node.slice
        if not isinstance(key, ast.Constant) or not isinstance(key.value, (str, int)):
            raise _bad(expression, "a subscript must be a string or a number")
        return _field_path(expression, node.value) + (key.value,)
    raise _bad(expression, f"{type(node).__name__} is not a field")


def _lookup(fields: Dict[str, Any], path: tuple):
    value: Any = fields
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def fields_of(summary: Dict[str, Any], model: Dict[str, Any], metadata: Dict[str, Any]):
    """The fields a selector sees for one version."""
    config = (model or {}).get("config") or {}
    features = config.get("features")
    names = (
        [f.get("name") for f in features if isinstance(f, dict)]
        if isinstance(features, list) else []
    )
    return {
        **summary,
        "upstream": (model or {}).get("upstream"),
        "features": names,
        "config": config,
        "metadata": metadata or {},
    }


def sql_prefilter(expression: str, versions, dialect: str) -> list:
    """SQL conditions implied by the selector's top-level ``and`` terms that
    the database can check (``entrypoint == "x"``, ``KEY <op> number`` on a
    metadata key): every version the selector matches satisfies them, so
    ``find`` decodes only the rows they keep and still runs the selector."""
    from sqlalchemy import Float, cast, func

    tree = ast.parse(_contains_as_operator(expression), mode="eval").body
    is_and = isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And)
    terms = tree.values if is_and else [tree]
    conditions = []
    for term in terms:
        if not (isinstance(term, ast.Compare) and len(term.ops) == 1
                and isinstance(term.left, ast.Name)
                and isinstance(term.comparators[0], ast.Constant)):
            continue
        name, op, value = term.left.id, type(term.ops[0]), term.comparators[0].value
        if name == "entrypoint" and op is ast.Eq and isinstance(value, str):
            conditions.append(versions.c.entrypoint == value)
        elif (name not in FIELDS and op in _COMPARISONS and op is not ast.NotEq
              and isinstance(value, (int, float)) and not isinstance(value, bool)
              and abs(value) < 2 ** 53):  # compared as doubles, as Python does
            field = versions.c.metadata[name]
            if dialect == "postgresql":
                kind = func.json_typeof(field) == "number"
                number = cast(field.as_string(), Float)
            elif dialect == "sqlite":
                kind = func.json_type(versions.c.metadata, f'$."{name}"').in_(("integer", "real"))
                number = field.as_float()
            else:
                continue
            conditions.append(kind & _COMPARISONS[op](number, value))
    return conditions
