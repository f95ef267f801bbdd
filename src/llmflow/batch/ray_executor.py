"""Run batch jobs on Ray (``llmflow batch --engine ray [--ray-address ADDRESS]``).

The driver plans, creates the job runs, tracks progress, writes the result file and
handles resume exactly as with the local engine; only executing a run moves to Ray. Each
Ray worker holds one async actor (:class:`JobWorker`) with its own Runtime on the shared
store, running up to ``ceil(max_workers / actors)`` runs at once in its event loop.
Semantics do not change: run ids, events, leases and recovery are the store's, so a
batch started on Ray can be resumed locally and the other way round.

The store must be shared: a SQLite file works for a single-node cluster (every worker
opens the same file), Postgres for several machines. Workers need llmflow (and any module
a ``python`` step imports) installed; they get the driver's environment (``LLMFLOW_*`` and
provider keys) and its project directory (``LLMFLOW_HOME``).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.errors import BatchError

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

INSTALL_HINT = "pip install 'llmflow[ray]'  (ray>=2.30)"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError("--engine ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    return ray


class JobWorker:
    """One Ray actor: a Runtime on the shared store, executing job runs by id."""

    def __init__(self, env: dict[str, str], home: str) -> None:
        from llmflow.runtime import build_runtime

        self.rt = build_runtime(env=env, home=Path(home))

    async def execute(self, run_id: str, force: bool = False) -> dict[str, Any]:
        st = await self.rt.execute(run_id, force=force)
        return {"status": str(st.status), "error": st.error}

    def ping(self) -> str:
        return self.rt.owner


class RayExecutor:
    def __init__(
        self,
        rt: RunService,
        *,
        address: str | None = None,
        max_workers: int = 16,
        actors: int | None = None,
        force: bool = False,
    ) -> None:
        ray = _ray()
        self.force = force
        url = getattr(rt.store, "url", "")
        if url.startswith("memory"):
            raise BatchError(
                "--engine ray needs a store the Ray workers can share; this one is in memory",
                hint="use the default SQLite store (one machine) or LLMFLOW_DATABASE_URL=postgresql://... (several)",
            )
        self._owns = not ray.is_initialized()
        if self._owns:
            # no address: a private local instance, even when `ray start` left a cluster
            # behind on this machine ("auto" joins that one)
            kw: dict[str, Any] = {"log_to_driver": False, "address": address or "local"}
            if not address:
                kw["include_dashboard"] = False
            ray.init(**kw)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1 and url.startswith("sqlite"):
            raise BatchError(
                f"the Ray cluster has {len(nodes)} machines but the store is a SQLite file ({url})",
                hint="point every machine at one Postgres database: LLMFLOW_DATABASE_URL=postgresql://...",
            )
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        n = actors or max(1, min(max_workers, cpus))
        per_actor = max(1, math.ceil(max_workers / n))
        env = {**rt.settings.env, "LLMFLOW_DATABASE_URL": url, "LLMFLOW_HOME": str(rt.settings.home)}
        cls = ray.remote(JobWorker).options(num_cpus=1, max_concurrency=per_actor + 1)
        self.actors = [cls.remote(env, str(rt.settings.home)) for _ in range(n)]
        self._load = [0] * n
        self._ray = ray
        ray.get([a.ping.remote() for a in self.actors])  # fail here, not on the first job

    async def execute(self, run_id: str) -> dict[str, Any]:
        i = min(range(len(self.actors)), key=self._load.__getitem__)  # least busy actor
        self._load[i] += 1
        ref = self.actors[i].execute.remote(run_id, self.force)
        try:
            return await ref
        except asyncio.CancelledError:
            self._ray.cancel(ref)
            raise
        except self._ray.exceptions.RayError as exc:
            raise BatchError(f"Ray could not run {run_id}: {exc}") from None
        finally:
            self._load[i] -= 1

    async def close(self) -> None:
        for a in self.actors:
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                pass
        self.actors = []
        if self._owns:
            self._ray.shutdown()
