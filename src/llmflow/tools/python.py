"""Python functions as tools: ``@llmflow.tool`` and ``module:function``.

The arguments' JSON schema comes from the type hints (through pydantic, so pydantic models,
``Literal``, ``list[int]`` and defaults all work), the description from the docstring's first
paragraph, each argument's description from a Google-style ``Args:`` section. A parameter
named ``ctx`` receives the :class:`~llmflow.tools.base.CallContext` and is not shown to the
model. Sync functions run in a worker thread; async ones on the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.tools.base import CallContext, Tool, jsonable, tool_error

CONTEXT_PARAM = "ctx"


@dataclass(frozen=True)
class ToolOptions:
    """What ``@llmflow.tool(...)`` said about a function."""

    name: str
    description: str | None = None
    confirm: bool = False
    timeout: float | None = None
    retry: int | None = None


class SchemaError(ValueError):
    """A function's arguments cannot be described as a JSON schema."""


def docstring_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a docstring with an optional ``Args:``
    section. Hand-written: ten lines, and the format is the one Python tools use."""
    doc = inspect.getdoc(fn) or ""
    head, _, rest = doc.partition("\nArgs:")
    description = head.strip().split("\n\n")[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        m = re.match(r"^\s{0,8}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
        if m and not line.startswith(" " * 9):
            current = m.group(1)
            args[current] = m.group(2).strip()
        elif current and line.strip() and not re.match(r"^\w+:\s*$", line.strip()):
            args[current] += " " + line.strip()
        elif re.match(r"^\w+:\s*$", line.strip()):
            break  # Returns:, Raises:, ...
    return description, args


def function_schema(fn: Callable[..., Any]) -> tuple[dict[str, Any], Any, bool]:
    """(JSON schema, pydantic model validating the arguments, takes ctx) for ``fn``.
    Raises SchemaError when a parameter's type cannot be described."""
    import typing

    from pydantic import ConfigDict, Field, create_model

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"cannot read the signature of {fn!r}: {exc}") from None
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 - a broken annotation is a schema problem
        raise SchemaError(f"cannot resolve the type hints of {getattr(fn, '__name__', fn)}: {exc}") from None
    _, arg_docs = docstring_parts(fn)
    fields: dict[str, Any] = {}
    takes_ctx = False
    for name, p in sig.parameters.items():
        if name == CONTEXT_PARAM:
            takes_ctx = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SchemaError(
                f"parameter *{name} of {fn.__name__} cannot be described to a model; name each argument"
            )
        ann = hints.get(name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[name] = (ann, Field(default, description=arg_docs.get(name)))
    try:
        model = create_model(
            f"{fn.__name__}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = model.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - pydantic raises several kinds here
        raise SchemaError(
            f"the arguments of {fn.__name__} cannot be described as a JSON schema: {str(exc).splitlines()[0]}"
        ) from None
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema, model, takes_ctx


def python_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    source: str | None = None,
) -> Tool:
    """A Tool calling ``fn``; raises SchemaError when its arguments cannot be described."""
    opts: ToolOptions | None = getattr(fn, "__llmflow_tool__", None)
    schema, model, takes_ctx = function_schema(fn)
    doc, _ = docstring_parts(fn)
    tool_name = name or (opts.name if opts else None) or fn.__name__
    is_async = inspect.iscoroutinefunction(fn)

    async def call(arguments: dict[str, Any], cc: CallContext) -> Any:
        from pydantic import ValidationError

        try:
            parsed = model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise tool_error(f"invalid arguments for {tool_name}: {problems}", kind="arguments") from None
        kwargs = {
            k: getattr(parsed, k) for k in parsed.model_fields_set | {k for k in type(parsed).model_fields}
        }
        if takes_ctx:
            kwargs[CONTEXT_PARAM] = cc
        if is_async:
            out = await fn(**kwargs)
        else:
            out = await asyncio.to_thread(fn, **kwargs)
        return jsonable(out)

    return Tool(
        name=tool_name,
        description=description or (opts.description if opts else None) or doc or f"Call {tool_name}.",
        parameters=schema,
        fn=call,
        source=source or f"python {getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', tool_name)}",
        confirm=bool(opts.confirm) if opts else False,
        runs_code=False,
    )


def import_function(ref: str, flow_dir: Path | None = None) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function. A module that is not importable but
    sits next to the flow file (``flow_dir/module.py``) is loaded from there. Raises
    LookupError with a message that says what is missing."""
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise LookupError(f"{ref!r} is not 'module:function'")
    try:
        obj: Any = importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        beside = flow_dir / f"{mod}.py" if flow_dir is not None and "." not in mod else None
        if beside is None or not beside.is_file():
            raise LookupError(f"cannot import module {mod!r}: {exc}") from None
        obj = _load_beside(mod, beside)
    except ImportError as exc:
        raise LookupError(f"cannot import module {mod!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the module itself raised while importing
        raise LookupError(f"importing module {mod!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LookupError(f"module {mod!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LookupError(f"{ref!r} is not callable")
    return obj


def _load_beside(name: str, path: Path) -> Any:
    """Load ``path`` as module ``name`` (once per process)."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LookupError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the module raised while importing
        raise LookupError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    sys.modules[name] = module
    return module
