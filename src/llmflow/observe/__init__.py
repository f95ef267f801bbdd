"""Observability: OpenTelemetry traces built from the event log (:mod:`.tracing`), the
Prometheus metrics of a service (:mod:`.metrics`). Nothing happens at import; the
observers are registered through the ``llmflow.observers`` entry point group (:mod:`.plugin`)."""
