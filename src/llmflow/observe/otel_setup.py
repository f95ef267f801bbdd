"""The tracer provider llmflow exports with, configured by the standard variables.

Tracing is on when ``LLMFLOW_OTEL=1`` or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and off with
``LLMFLOW_OTEL=0`` or ``OTEL_SDK_DISABLED=true``. ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or
``..._TRACES_PROTOCOL``) picks ``http/protobuf`` (default) or ``grpc``; the exporters read
their other ``OTEL_EXPORTER_OTLP_*`` settings (headers, timeout, certificates) themselves.
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the service.

Exporting never blocks or fails a run: spans go through a BatchSpanProcessor (a background
thread), and an export that fails (a dead collector) costs one warning, not one per batch.
One provider per process and configuration; it is flushed at interpreter exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("llmflow.observe")

_PROVIDERS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def tracing_enabled(env: Mapping[str, str], flag: bool | None) -> bool:
    """``flag``: the ``LLMFLOW_OTEL`` setting (typed in :class:`llmflow.settings.Settings`);
    unset, tracing follows OpenTelemetry's own variables."""
    if flag is False or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if flag:
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, percent-encoded values) and
    ``OTEL_SERVICE_NAME`` (wins over a service.name among the attributes)."""
    from urllib.parse import unquote

    attrs: dict[str, str] = {}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = unquote(value.strip())
    attrs["service.name"] = env.get("OTEL_SERVICE_NAME") or attrs.get("service.name") or "llmflow"
    return attrs


class OneWarningExporter:
    """Wraps an exporter: the first failed export logs one warning naming the endpoint and
    the fix; later failures are quiet (debug) until an export succeeds again."""

    def __init__(self, inner: Any, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._failing = False

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self._inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter's error never reaches a run
            log.debug("span export raised", exc_info=True)
            result, why = SpanExportResult.FAILURE, str(exc)
        else:
            why = "the collector did not accept them"
        if result == SpanExportResult.SUCCESS:
            if self._failing:
                log.info("exporting traces to %s works again", self._endpoint)
            self._failing = False
        elif not self._failing:
            self._failing = True
            log.warning(
                "cannot export traces to %s (%s); runs go on, their spans are dropped until it answers (check OTEL_EXPORTER_OTLP_ENDPOINT or unset it)",
                self._endpoint,
                why,
            )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def _otlp_exporter(env: Mapping[str, str]) -> tuple[Any, str]:
    protocol = (
        (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        .strip()
        .lower()
    )
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    timeout = float(
        env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT") or 10
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = traces or base or "http://localhost:4317"
        return GrpcExporter(
            endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=timeout
        ), endpoint
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    endpoint = traces or (base.rstrip("/") + "/v1/traces" if base else "http://localhost:4318/v1/traces")
    return HttpExporter(endpoint=endpoint, timeout=timeout), endpoint


def _quiet_exporter_loggers() -> None:
    """The OTLP exporters log every failed batch at WARNING/ERROR with a traceback; the
    wrapper above says it once instead."""
    for name in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.exporter",
        "opentelemetry.exporter.otlp.proto.http._common",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def tracer_provider(
    env: Mapping[str, str], exporter: Any | None = None, *, batch: bool = True
) -> tuple[Any, Any]:
    """(TracerProvider, PresetIds) for ``env``: built once per configuration and process.
    ``exporter`` replaces the OTLP exporter (tests: an in-memory one, with ``batch=False``)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from llmflow.observe.tracing import PresetIds

    attrs = resource_attributes(env)
    key = (
        tuple(sorted(attrs.items())),
        tuple(sorted((k, v) for k, v in env.items() if k.startswith("OTEL_EXPORTER_OTLP"))),
        id(exporter),
        batch,
    )
    with _LOCK:
        hit = _PROVIDERS.get(key)
        if hit is not None:
            return hit
        ids = PresetIds()
        provider = TracerProvider(resource=Resource.create(attrs), id_generator=ids)
        if exporter is None:
            inner, endpoint = _otlp_exporter(env)
            _quiet_exporter_loggers()
            exporter = OneWarningExporter(inner, endpoint)
        span_exporter: Any = (
            exporter  # OneWarningExporter is a duck-typed SpanExporter (otel is an optional import)
        )
        provider.add_span_processor(
            BatchSpanProcessor(span_exporter) if batch else SimpleSpanProcessor(span_exporter)
        )
        _PROVIDERS[key] = (provider, ids)
        return provider, ids
