"""The runtime layer: the composition root and the run service over the engine.

    root.py       build_runtime / shared_runtime: settings -> registry -> store -> providers -> Runtime
    plugins.py    the one plugin registry, loaded; the store a URL names
    service.py    Runtime: create, execute (fresh, resumed, recovered), the run's flow and state
    flowcache.py  composed flows, cached by file stamps
    views.py      a run as the CLI and the API show it
    worker.py     the queue worker: claims runs and executes them

Other layers import the names below from ``llmflow.runtime``; they resolve lazily, so
importing one module of this package does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.runtime.root import build_runtime as build_runtime
    from llmflow.runtime.root import close_shared_runtimes as close_shared_runtimes
    from llmflow.runtime.root import shared_runtime as shared_runtime
    from llmflow.runtime.service import RunOptions as RunOptions
    from llmflow.runtime.service import Runtime as Runtime
    from llmflow.runtime.service import child_run_id as child_run_id
    from llmflow.runtime.service import run_blocking as run_blocking
    from llmflow.runtime.worker import Worker as Worker

_EXPORTS = {
    "build_runtime": "llmflow.runtime.root",
    "close_shared_runtimes": "llmflow.runtime.root",
    "shared_runtime": "llmflow.runtime.root",
    "RunOptions": "llmflow.runtime.service",
    "Runtime": "llmflow.runtime.service",
    "child_run_id": "llmflow.runtime.service",
    "run_blocking": "llmflow.runtime.service",
    "Worker": "llmflow.runtime.worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562 lazy exports
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmflow.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
