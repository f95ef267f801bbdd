"""Pydantic's validation errors as diagnostics users can act on.

Union member tags (``for_each.str``) are folded into one "must be a string or a list";
type errors say what was expected and what was given; unknown keys get "did you mean".
"""

from __future__ import annotations

import re
import types
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from llmflow.model.diagnostics import did_you_mean, format_path

if TYPE_CHECKING:
    from llmflow.model.collector import Collector

ID_HINT = "ids start with a letter or '_' and use only letters, digits and '_'"


def _strip_optional(tp: Any) -> Any:
    for _ in range(10):
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp
    return tp


def _member_for_tag(members: list[Any], tag: Any) -> Any:
    for m in members:
        if isinstance(m, type) and issubclass(m, BaseModel) and tag == m.__name__:
            return m
        origin = typing.get_origin(m)
        if origin is not None and isinstance(tag, str) and tag.startswith(origin.__name__ + "["):
            return m
    return None


_TAG_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
}


def _describe_tag(tag: Any) -> str:
    t = str(tag)
    base = t.split("[")[0]
    return _TAG_WORDS.get(base, "a mapping" if t[:1].isupper() else t)


def _split_loc(
    cls: type[BaseModel], loc: tuple[Any, ...]
) -> tuple[tuple[Any, ...], list[Any], type[BaseModel] | None, int | None]:
    """Clean an error location: drop pydantic's union member tags. Returns (path, tags,
    the model owning the last key, the length of the path where the first tag was)."""
    clean: list[Any] = []
    tags: list[Any] = []
    at_tag: int | None = None
    owner: type[BaseModel] | None = cls
    tp: Any = cls
    for part in loc:
        tp = _strip_optional(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner = tp
            clean.append(part)
            tp = (
                tp.model_fields[part].annotation
                if isinstance(part, str) and part in tp.model_fields
                else None
            )
            continue
        origin = typing.get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            if at_tag is None:
                at_tag = len(clean)
            tags.append(part)
            tp = _member_for_tag([a for a in typing.get_args(tp) if a is not type(None)], part)
            continue
        clean.append(part)
        if origin is list:
            tp = typing.get_args(tp)[0] if typing.get_args(tp) else None
        elif origin is dict:
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else None
        else:
            tp = None
    return tuple(clean), tags, owner, at_tag


def short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _got(v: Any) -> str:
    return f"got {type(v).__name__} {short(v)}" if v is not None else "got null"


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def pydantic_errors(
    c: Collector, exc: ValidationError, cls: type[BaseModel], prefix: tuple[Any, ...], skip: set[str]
) -> None:
    unions: dict[tuple[Any, ...], tuple[list[str], Any]] = {}  # path at a union -> (alternatives, input)
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in skip:
            continue
        rel, tags, owner, at_tag = _split_loc(cls, loc)
        etype = err["type"]
        given = err.get("input")
        if tags and at_tag is not None and etype in _TYPE_WORDS:
            key = (*prefix, *rel[:at_tag])
            alts, first_input = unions.setdefault(key, ([], given if len(rel) == at_tag else None))
            word = _describe_tag(tags[0])
            if word not in alts:
                alts.append(word)
            continue
        path = (*prefix, *rel)
        _one_error(c, err, etype, given, rel, path, owner)
    for path, (alts, given) in unions.items():
        expected = " or ".join(alts)
        where = format_path(path) or "the flow"
        c.add(
            "invalid-value",
            f"{where} must be {expected}, {_got(given) if given is not None else 'got something else'}",
            path,
            f"give {expected}",
        )


def _one_error(
    c: Collector,
    err: Any,
    etype: str,
    given: Any,
    rel: tuple[Any, ...],
    path: tuple[Any, ...],
    owner: type[BaseModel] | None,
) -> None:
    ctx = err.get("ctx") or {}
    name = format_path(path) or "the flow"
    if etype == "extra_forbidden":
        key = str(rel[-1]) if rel else "?"
        fields = [f for f in (owner.model_fields if owner else {}) if f != "kind"]
        hint = did_you_mean(key, fields) or (f"known keys: {', '.join(fields)}" if fields else "remove it")
        c.add("unknown-key", f"unknown key '{key}' in {_owner_name(c, path[:-1])}", path, hint)
    elif etype == "missing":
        c.add(
            "missing-key",
            f"missing required key '{rel[-1] if rel else '?'}' in {_owner_name(c, path[:-1])}",
            path,
            "add it",
        )
    elif etype == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = (
            did_you_mean(str(given), options) if isinstance(given, str) else None
        ) or f"expected {ctx.get('expected', '')}"
        c.add("invalid-value", f"invalid value {short(given)} for {name}", path, hint)
    elif etype == "string_pattern_mismatch" and rel and rel[-1] == "id":
        c.add("invalid-value", f"invalid step id {short(given)}", path, ID_HINT)
    elif etype == "value_error":
        c.add("invalid-value", str(err["msg"]).removeprefix("Value error, "), path)
    elif etype in _TYPE_WORDS:
        c.add(
            "invalid-value",
            f"{name} must be {_TYPE_WORDS[etype]}, {_got(given)}",
            path,
            f"give {_TYPE_WORDS[etype]}",
        )
    elif etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[
            etype
        ]
        bound = next(iter(ctx.values()), "?")
        c.add("invalid-value", f"{name} must be {op} {bound}, got {short(given)}", path)
    elif etype == "too_short":
        n = ctx.get("min_length", 1)
        c.add("invalid-value", f"{name} needs at least {n} item{'s' if n != 1 else ''}", path)
    elif etype == "too_long":
        c.add("invalid-value", f"{name} has too many items (at most {ctx.get('max_length', '?')})", path)
    else:
        c.add("invalid-value", f"{name}: {err['msg']} ({_got(given)})", path)


def _owner_name(c: Collector, path: tuple[Any, ...]) -> str:
    """'step 'x'' for a step's key path, else the key path."""
    for sid, p in c.all_ids.items():
        if p == path:
            return f"step '{sid}'"
    return format_path(path) or "the flow"
