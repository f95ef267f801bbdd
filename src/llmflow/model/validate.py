"""Validation entry points that build a :class:`~llmflow.model.spec.Flow`: a document
(:func:`validate_document`, the three passes of :mod:`llmflow.model.checks`) and the inputs
of a run (:func:`validate_inputs`)."""

from __future__ import annotations

from typing import Any

from llmflow.model.checks import check_document
from llmflow.model.diagnostics import Diagnostic, did_you_mean
from llmflow.model.flow_spec import FlowSpec
from llmflow.model.sourcemap import SourceMap
from llmflow.model.spec import Flow
from llmflow.model.value_errors import short


def validate_document(
    doc: Any, sources: SourceMap | None = None, file: str | None = None
) -> tuple[Flow | None, list[Diagnostic]]:
    """Validate a flow document. Returns (flow, []) when valid, else (None, diagnostics)
    sorted by file position. Never raises for bad input."""
    return check_document(doc, Flow, sources, file)


# -- inputs ----------------------------------------------------------------------------------

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
}


def validate_inputs(
    flow: FlowSpec, given: dict[str, Any], *, coerce_strings: bool = True
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Check run inputs against the flow: unknown names, missing required, wrong types.
    With ``coerce_strings`` (command-line values), "3" becomes 3 for an integer input, etc."""
    import json

    out: dict[str, Any] = {}
    diags: list[Diagnostic] = []
    for k, v in given.items():
        if k not in flow.inputs:
            known = list(flow.inputs)
            diags.append(
                Diagnostic(
                    "unknown-input",
                    f"flow '{flow.name}' has no input '{k}'",
                    f"inputs.{k}",
                    did_you_mean(k, known)
                    or (f"inputs: {', '.join(known)}" if known else "this flow takes no inputs"),
                )
            )
            continue
        spec = flow.inputs[k]
        if coerce_strings and isinstance(v, str) and spec.type not in ("string", "any"):
            try:
                if spec.type == "boolean":
                    low = v.strip().lower()
                    if low in ("true", "yes", "1", "on"):
                        v = True
                    elif low in ("false", "no", "0", "off"):
                        v = False
                else:
                    v = json.loads(v)
                if spec.type == "number" and isinstance(v, int) and not isinstance(v, bool):
                    v = float(v)
            except ValueError:
                pass
        expected = _TYPES.get(spec.type)
        bad = expected is not None and (
            not isinstance(v, expected) or (spec.type in ("integer", "number") and isinstance(v, bool))
        )
        if bad:
            diags.append(
                Diagnostic(
                    "wrong-type",
                    f"input '{k}' must be {_A.get(spec.type, spec.type)}, got {type(v).__name__} {short(v)}",
                    f"inputs.{k}",
                    f"give {_A.get(spec.type, spec.type)}",
                )
            )
            continue
        if spec.enum is not None and v not in spec.enum:
            diags.append(
                Diagnostic(
                    "invalid-value",
                    f"input '{k}' must be one of {spec.enum}, got {short(v)}",
                    f"inputs.{k}",
                    did_you_mean(str(v), [str(e) for e in spec.enum]),
                )
            )
            continue
        out[k] = v
    for k, spec in flow.inputs.items():
        if k in out or any(d.path == f"inputs.{k}" for d in diags):
            continue
        if spec.is_required:
            diags.append(
                Diagnostic(
                    "missing-input",
                    f"missing required input '{k}' ({spec.type})",
                    f"inputs.{k}",
                    f"add '{k}' to the run's inputs",
                )
            )
        else:
            out[k] = spec.default
    return out, diags


_A = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}
