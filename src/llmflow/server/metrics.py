"""``GET /metrics``: the service's Prometheus metrics (:mod:`llmflow.observe.metrics`), and
``GET /api/v1/runs/{id}/trace``: the trace a run is recorded under.

Behind the API token like every route, unless ``LLMFLOW_METRICS_PUBLIC=1``: then it is
answered by a small ASGI middleware outside the token check (a scraper without the token
sees metrics, never runs). Connected SSE streams and WebSocket clients are counted by the
same middleware as they come and go.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/metrics"
router = APIRouter(tags=["service"])


def render(metrics: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST


@router.get(
    PATH,
    summary="Prometheus metrics: runs, steps, model calls, tokens, cost, queue, leases, clients",
    response_class=Response,
)
async def metrics_route(request: Request) -> Response:
    body, ctype = render(request.app.state.metrics)
    return Response(body, media_type=ctype)


@router.get(
    "/api/v1/runs/{run_id}/trace",
    tags=["runs"],
    summary="A run's OpenTelemetry trace: trace id and W3C traceparent of its run span",
)
async def run_trace(run_id: str, request: Request) -> dict[str, Any]:
    from llmflow.observe.context import traceparent_of
    from llmflow.server.native import get_run

    svc = request.app.state.services
    get_run(svc, run_id)
    tp = traceparent_of(svc.store, run_id)
    return {"run_id": run_id, "trace_id": tp.split("-")[1], "traceparent": tp}


class MetricsMiddleware:
    """Counts SSE streams and WebSocket clients; answers ``GET /metrics`` itself when the
    metrics are public (it is then placed outside the token check)."""

    def __init__(self, app: ASGIApp, metrics: Any, public: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif (
            scope["type"] == "http"
            and self.public
            and scope.get("path") == PATH
            and scope.get("method") in ("GET", "HEAD")
        ):
            body, ctype = render(self.metrics)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", ctype.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body if scope.get("method") == "GET" else b""})
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._counted(scope, receive, send, self.metrics.websocket_clients, _accepted)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._counted(scope, receive, send, self.metrics.sse_clients, _event_stream)

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, gauge: Any, opens: Callable[[Any], bool]
    ) -> None:
        """Run the app with ``gauge`` one higher from the message that ``opens`` the
        connection (as the client sees it) until the app is done with it."""
        counted = False

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal counted
            if not counted and opens(message):
                gauge.inc()
                counted = True
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if counted:
                gauge.dec()


def _accepted(message: Any) -> bool:
    return bool(message["type"] == "websocket.accept")


def _event_stream(message: Any) -> bool:
    return message["type"] == "http.response.start" and any(
        k.lower() == b"content-type" and v.startswith(b"text/event-stream")
        for k, v in message.get("headers") or []
    )


def install(app: FastAPI, *, public: bool = False) -> None:
    """The route, and the middleware (call it after the token check was added, so a public
    endpoint, ``LLMFLOW_METRICS_PUBLIC``, sits outside it)."""
    from llmflow.observe.metrics import RunMetrics

    metrics = RunMetrics()
    app.state.metrics = metrics
    app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=metrics, public=public)


def attach(app: FastAPI, services: Any) -> None:
    """Count the events of the service's runtime (called once its services are open)."""
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None and metrics.runtime is None:
        metrics.attach(services.runtime)


def detach(app: FastAPI) -> None:
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.detach()
