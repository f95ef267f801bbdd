"""OpenAPI operation ids that read like the API: the route function's name (``create_run``,
``list_batches``) on the native API, prefixed by the surface on the compatibility ones
(``agent_runner_create_run``, ``buttermilk_post_flow``), instead of FastAPI's default
``create_run_api_v1_runs_post``. Client generators turn these into method names."""

from __future__ import annotations

from typing import Any

UNPREFIXED = frozenset({"native", "service"})


def operation_id(route: Any) -> str:
    tag = str((route.tags or ["native"])[0])
    return route.name if tag in UNPREFIXED else f"{tag.replace('-', '_')}_{route.name}"
