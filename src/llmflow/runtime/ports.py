"""What the interfaces (batch, evals, observe, the facades, the server, the CLI) need of the
runtime, as a protocol: they are typed against :class:`RunService`, never the concrete
:class:`llmflow.runtime.service.Runtime`, so a test can hand them a smaller double and the
surface they lean on is written down in one place. ``Runtime`` satisfies it (mypy checks
``_satisfied`` below).

What is left out on purpose: the engine's executors, the writer, the mailbox, the flow
caches and the bookkeeping of runs created here - the runtime's own business."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmflow.engine.events import Event, NewEvent
    from llmflow.engine.ports import Clock
    from llmflow.engine.runner import RunDriver
    from llmflow.engine.state import RunState
    from llmflow.model.loader import LoadedFlow
    from llmflow.model.spec import Flow
    from llmflow.runtime.flowcache import FlowCache
    from llmflow.runtime.options import RunRequest
    from llmflow.runtime.service import Runtime
    from llmflow.settings import Settings
    from llmflow.steps.trust import TrustPolicy
    from llmflow.store.base import RunRecord, Store
    from llmflow.tools.services import ToolServices

Observer = Callable[["Event"], None]


class RunService(Protocol):
    # what it is built from
    settings: Settings
    store: Store
    clock: Clock
    owner: str
    gateway: Any  # llmflow.providers.gateway.Gateway (its registry lists the known providers)
    observers: list[Observer]
    functions: dict[str, Callable[..., Any]]
    trust: TrustPolicy
    tool_services: ToolServices
    flows: FlowCache
    active: dict[str, RunDriver]

    @property
    def closed(self) -> bool: ...

    async def io(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def notify(self, events: list[Event]) -> None: ...
    def record(self, run_id: str, events: list[NewEvent]) -> list[Event]: ...
    def record_new_run(self, run: RunRecord, events: list[NewEvent]) -> list[Event]: ...

    # flows and runs
    def load(
        self, flow_ref: str | Path | Flow | LoadedFlow, overrides: list[str] | None = None
    ) -> LoadedFlow: ...
    def flow_of(self, rec: RunRecord, *, force: bool = False, check_source: bool = True) -> Flow: ...
    def create_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        *,
        overrides: list[str] | None = None,
        coerce_strings: bool = True,
        choices: dict[str, Any] | None = None,
        claim: bool = False,
        spec_record: dict[str, Any] | None = None,
        defer: bool = False,
    ) -> RunRecord: ...
    async def create_run_async(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> RunRecord: ...
    def build_run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> tuple[RunRecord, list[NewEvent]]: ...
    async def create_runs_async(self, built: list[tuple[RunRecord, list[NewEvent]]]) -> list[RunRecord]: ...
    def get(self, run_id: str) -> RunRecord: ...
    def state_of(
        self,
        rec: RunRecord,
        flow: Flow | None = None,
        events: list[Event] | None = None,
        workspace: Path | None = None,
    ) -> RunState: ...
    def workspace_of(self, rec: RunRecord) -> Path: ...
    def artifacts_of(self, rec: RunRecord) -> Path: ...
    async def execute(
        self,
        run_id: str,
        *,
        subscribers: list[Observer] | None = None,
        linger_when_paused: bool = False,
        force: bool = False,
        on_runner: Callable[[RunDriver], None] | None = None,
        park_after: float | None = None,
        claimed: RunRecord | None = None,
    ) -> RunState: ...
    async def run(
        self,
        flow_ref: Any,
        inputs: dict[str, Any] | None = None,
        options: RunRequest | None = None,
        **kw: Any,
    ) -> RunState: ...

    # control
    def owned_live(self, rec: RunRecord) -> bool: ...
    def control(self, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str: ...
    def fail_run(self, run_id: str, error: str) -> list[Event]: ...
    def pending_requests(self, run_id: str) -> dict[str, dict[str, Any]]: ...
    def request_rerun(
        self, run_id: str, step_id: str, *, unit: str | None = None, downstream: bool = False
    ) -> list[str]: ...
    async def rerun(
        self,
        run_id: str,
        step_id: str,
        *,
        unit: str | None = None,
        downstream: bool = False,
        subscribers: list[Observer] | None = None,
    ) -> RunState: ...
    def fork(self, run_id: str, from_step: str, options: RunRequest | None = None) -> RunRecord: ...

    # views
    def view(self, run_id: str, state: RunState | None = None) -> dict[str, Any]: ...
    def close(self) -> None: ...


if TYPE_CHECKING:

    def _satisfied(rt: Runtime) -> RunService:
        return rt  # mypy: the concrete runtime has everything the protocol promises
