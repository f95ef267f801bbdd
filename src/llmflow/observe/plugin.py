"""The observers llmflow registers under the ``llmflow.observers`` entry point group
(``pyproject.toml``). A factory takes the runtime being built and returns an observer (a
callable taking each durable event) or None when it has nothing to do in this process.
Plugins add theirs the same way::

    [project.entry-points."llmflow.observers"]
    mine = "my_package.observers:factory"
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

log = logging.getLogger("llmflow.observe")


def otel_observer(runtime: RunService) -> Any | None:
    """Traces of every run (see :mod:`llmflow.observe.tracing`) when tracing is enabled."""
    from llmflow.observe.otel_setup import tracing_enabled

    settings = runtime.settings
    env = dict(settings.env)
    if not tracing_enabled(env, settings.otel):
        return None
    try:
        from llmflow.observe.otel_setup import tracer_provider
        from llmflow.observe.tracing import TraceObserver
    except ImportError:
        log.warning(
            "tracing is enabled (LLMFLOW_OTEL / OTEL_EXPORTER_OTLP_ENDPOINT) but OpenTelemetry is not installed: pip install 'llmflow[otel]'"
        )
        return None
    provider, ids = tracer_provider(env)
    return TraceObserver(
        provider, ids, store=runtime.store, env=env, capture_content=settings.otel_capture_content
    )
