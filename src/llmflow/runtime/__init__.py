"""The runtime layer: the composition root and the run service over the engine.

    root.py       the composition root: build_runtime / shared_runtime
                  (settings -> registry -> store -> providers -> gateway -> Runtime)
    plugins.py    the one plugin registry, loaded; the store a URL names
    service.py    Runtime, the run service's one face: create, execute, control, views
    options.py    RunRequest (what a caller asks of one run), run ids
    creation.py   a new run's record, validated before anything is written
    flows.py      the flows runs use, prepared once; a recorded run's flow
    flowcache.py  composed flows, cached by file stamps
    execution.py  executing a run: claim, fold, drive, release
    control.py    cancel / pause / resume / answer, re-run a step in place, fork
    children.py   sub-flows as child runs
    ownership.py  leases and owners, the control mailbox
    views.py      a run as the CLI and the API show it
    worker.py     the queue worker: claims runs and executes them
    sync.py       run_blocking: the async runtime from sync code

Other layers import the names below from ``llmflow.runtime``; they resolve lazily, so
importing one module of this package does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.runtime.options import RunRequest as RunRequest
    from llmflow.runtime.options import child_run_id as child_run_id
    from llmflow.runtime.root import build_runtime as build_runtime
    from llmflow.runtime.root import close_shared_runtimes as close_shared_runtimes
    from llmflow.runtime.root import shared_runtime as shared_runtime
    from llmflow.runtime.service import Runtime as Runtime
    from llmflow.runtime.sync import run_blocking as run_blocking
    from llmflow.runtime.worker import Worker as Worker

_EXPORTS = {
    "build_runtime": "llmflow.runtime.root",
    "close_shared_runtimes": "llmflow.runtime.root",
    "shared_runtime": "llmflow.runtime.root",
    "RunRequest": "llmflow.runtime.options",
    "child_run_id": "llmflow.runtime.options",
    "Runtime": "llmflow.runtime.service",
    "run_blocking": "llmflow.runtime.sync",
    "Worker": "llmflow.runtime.worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562 lazy exports
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmflow.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
