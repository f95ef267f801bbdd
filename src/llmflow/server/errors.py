"""Errors become 4xx answers with ``{"detail": ...}``; only a bug is a 500.

=================================  ====  ==========================================
error                              code  detail
=================================  ====  ==========================================
FlowValidationError                422   [{loc, msg, type, hint}] - loc is the field path
request body / query / path        422   FastAPI's [{loc, msg, type}]
FlowNotFoundError, RunNotFound...  404   the message
RunStateError, ResumeRefusedError  409   the message (and hint)
ProjectPathError                   400   the message (which rule refused the path)
body over LLMFLOW_MAX_BODY_BYTES   413
nesting too deep to parse          422
text that is not valid Unicode     422   (a lone surrogate, whichever layer finds it)
cross-site request (CSRF)          403   what was refused and how to allow it
=================================  ====  ==========================================

Every JSON answer goes through :class:`SafeJSONResponse`: text that cannot be encoded
(a lone surrogate echoed from a request) is sent with U+FFFD in its place, never a 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from llmflow.errors import (
    CompositionError,
    FlowNotFoundError,
    FlowValidationError,
    LlmflowError,
    ResumeRefusedError,
    RunNotFoundError,
    RunStateError,
)
from llmflow.model.diagnostics import Diagnostic
from llmflow.server.services import ProjectPathError

log = logging.getLogger("llmflow.server")


def scrub(value: Any) -> Any:
    """``value`` with lone surrogates in its strings (and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON answer that survives text no UTF-8 can hold (see the module docstring)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(scrub(content))


def diag_loc(path: str, root: str = "body") -> list[str | int]:
    """``document.steps[2].llm`` -> ``["body", "document", "steps", 2, "llm"]``."""
    loc: list[str | int] = [root]
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path or ""):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return loc


def diagnostics_detail(diags: list[Diagnostic], root: str = "body") -> list[dict[str, Any]]:
    out = []
    for d in diags:
        item: dict[str, Any] = {"loc": diag_loc(d.path, root), "msg": d.message, "type": d.code}
        if d.hint:
            item["hint"] = d.hint
        if d.location.line is not None:
            item["line"], item["column"] = d.location.line, d.location.column
        out.append(item)
    return out


def _message(exc: LlmflowError) -> str:
    return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")


def _safe(value: Any) -> Any:
    """JSON-encodable as the response needs it (no NaN, no bytes, no lone surrogates);
    repr otherwise."""
    import json

    try:
        json.dumps(value, allow_nan=False)
        return scrub(value)
    except (TypeError, ValueError, RecursionError):
        return scrub(repr(value)[:200])


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{k: _safe(v) for k, v in err.items() if k != "url"} for err in exc.errors()]
        return SafeJSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(FlowValidationError)
    async def _invalid(request: Request, exc: FlowValidationError) -> JSONResponse:
        return SafeJSONResponse({"detail": diagnostics_detail(exc.diagnostics)}, status_code=422)

    @app.exception_handler(CompositionError)
    async def _composition(request: Request, exc: CompositionError) -> JSONResponse:
        return SafeJSONResponse({"detail": _message(exc)}, status_code=422)

    @app.exception_handler(FlowNotFoundError)
    @app.exception_handler(RunNotFoundError)
    async def _not_found(request: Request, exc: LlmflowError) -> JSONResponse:
        return SafeJSONResponse({"detail": _message(exc)}, status_code=404)

    @app.exception_handler(RunStateError)
    @app.exception_handler(ResumeRefusedError)
    async def _conflict(request: Request, exc: LlmflowError) -> JSONResponse:
        return SafeJSONResponse({"detail": _message(exc)}, status_code=409)

    @app.exception_handler(ProjectPathError)
    async def _path(request: Request, exc: ProjectPathError) -> JSONResponse:
        # a string, as every non-422 detail: Agent Runner's console prints a list as [object Object]
        return SafeJSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(UnicodeError)
    async def _unicode(request: Request, exc: UnicodeError) -> JSONResponse:
        # a lone surrogate (JSON "\ud800") decodes into a str that no UTF-8 layer can take:
        # whichever layer trips over it (the validators' regex engine, a store), the text
        # came from the request
        log.info("%s %s: text that is not valid Unicode: %s", request.method, request.url.path, exc)
        return SafeJSONResponse(
            {
                "detail": [
                    {
                        "loc": ["body"],
                        "msg": "the request holds text that is not valid Unicode (a lone surrogate such as \\ud800)",
                        "type": "unicode",
                    }
                ]
            },
            status_code=422,
        )

    @app.exception_handler(RecursionError)
    async def _deep(request: Request, exc: RecursionError) -> JSONResponse:
        return SafeJSONResponse(
            {
                "detail": [
                    {"loc": ["body"], "msg": "the JSON document is nested too deeply", "type": "too_deep"}
                ]
            },
            status_code=422,
        )

    @app.exception_handler(LlmflowError)
    async def _other(request: Request, exc: LlmflowError) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return SafeJSONResponse(
            {"detail": _message(exc)}, status_code=503 if type(exc).__name__ == "StoreError" else 400
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in %s %s", request.method, request.url.path, exc_info=exc)
        return SafeJSONResponse(
            {"detail": f"internal error: {type(exc).__name__}; see the server log"}, status_code=500
        )
