"""What the three HTTP surfaces share: creating runs from requests, waiting for them,
controlling them, projects, and the server's event hub and worker.

One instance per app, built in the app's lifespan from the runtime (``app.py``); routes
reach it through ``request.app.state.services``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.errors import FlowNotFoundError, FlowValidationError, RunStateError, StoreError
from llmflow.model.diagnostics import Diagnostic
from llmflow.model.limits import using
from llmflow.model.loader import LoadedFlow, parse_flow_text
from llmflow.model.spec import Flow
from llmflow.runtime import RunRequest
from llmflow.runtime.follow import TERMINAL_STATUSES, EventFollower, EventHub, wait_for_status
from llmflow.server.catalog import FlowCatalog
from llmflow.server.config import ServerConfig
from llmflow.steps.trust import posted_flow_problems

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService


@dataclass
class ApiRunOptions(RunRequest):
    """RunRequest plus what only the service records in a run's options."""

    disallow_shell: bool | None = None  # honoured by Runtime.execute
    request_options: dict[str, Any] | None = None  # the options as the client sent them


class ProjectPathError(ValueError):
    def __init__(self, message: str, loc: tuple[str, ...] = ("query", "local_path")) -> None:
        super().__init__(message)
        self.loc = loc


class Services:
    def __init__(
        self, runtime: RunService, config: ServerConfig, catalog: FlowCatalog, hub: EventHub, worker: Any
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.catalog = catalog
        self.hub = hub
        self.worker = worker
        self.sessions: Any = None  # the Buttermilk session manager (set by the app)
        self.started_at = time.time()
        self.limits = runtime.settings.limits()  # template, flow and document limits

    @property
    def store(self) -> Any:
        return self.runtime.store

    @property
    def projects_root(self) -> Path | None:
        return self.config.resolved_projects_root()

    # -- flows ----------------------------------------------------------------------------------
    async def load(self, name: str) -> LoadedFlow:
        """A served flow by name (composition runs in a thread: it takes ~0.2 s uncached;
        a cached ``--flows`` entry is answered here, without a thread hop)."""
        hit = self.catalog.cached(name) if isinstance(name, str) else None
        if hit is not None:
            return hit
        with using(self.limits):  # to_thread copies the context: the limits apply in the thread
            return await asyncio.to_thread(self.catalog.load, name)

    def parse_document(self, document: str | dict[str, Any]) -> LoadedFlow:
        """A flow definition sent in a request: validated, and checked against what posted
        flows may do (steps/trust.py). Raises FlowValidationError with field paths under
        ``document``."""
        with using(self.limits):
            return self._parse_document(document)

    def _parse_document(self, document: str | dict[str, Any]) -> LoadedFlow:
        try:
            if isinstance(document, str):
                flow = parse_flow_text(document, "<request>")
            else:
                from llmflow.model.validate import validate_document

                checked, diags = validate_document(document, file="<request>")
                if diags or checked is None:
                    raise FlowValidationError(diags)
                flow = checked
        except FlowValidationError as exc:
            raise FlowValidationError([_under("document", d) for d in exc.diagnostics]) from None
        problems = self.posted_flow_problems(flow)
        if problems:
            raise FlowValidationError(problems)
        return LoadedFlow(flow, None, "<request>")

    def posted_tool_problems(self, flow: Flow, allow_code: bool | None = None) -> list[Diagnostic]:
        """Tools of a posted flow: checked like any flow's, and, without --allow-shell, no
        tool that leads to code execution (module:function, shell, stdio MCP servers the
        document declares, flows with code steps); operator-registered ones are fine. The
        trust policy (steps/trust.py) calls it for the flow and its sub-flows."""
        from llmflow.model.diagnostics import Location
        from llmflow.tools.check import check_flow

        allow_code = self.config.allow_shell if allow_code is None else allow_code
        out: list[Diagnostic] = []
        if not allow_code:
            for name, spec in flow.mcp_servers.items():
                if spec.command is not None:
                    out.append(
                        Diagnostic(
                            "not-allowed",
                            f"MCP server {name!r} starts a command; flows posted over the API may not run code on the server",
                            f"document.mcp_servers.{name}",
                            "use a url server, one the operator declared, or start the server with --allow-shell",
                        )
                    )
        rt = self.runtime
        found = check_flow(
            flow,
            rt.tool_services,
            rt.functions,
            locate=lambda _p: Location("<request>"),
            flow_dir=None,
            allow_code=allow_code,
        )
        return out + [_under("document", d) for d in found]

    def posted_flow_problems(self, flow: Flow) -> list[Diagnostic]:
        return posted_flow_problems(
            flow,
            allow_code=self.config.allow_shell,
            served_flow=self._sub_flow,
            tool_problems=self.posted_tool_problems,
        )

    def _sub_flow(self, name: str) -> Flow:
        """A flow a posted sub-flow step may name: one the runtime finds by that name too,
        i.e. in the config dir (not --flows, not built in)."""
        entry = self.catalog.entry(name)
        if entry.origin != "config":
            raise FlowNotFoundError(
                f"flow {name!r} is not in the config dir {self.catalog.config_dir}, where sub-flows are found"
            )
        return self.catalog.load(name).flow

    # -- runs -----------------------------------------------------------------------------------
    def options(
        self,
        *,
        models: dict[str, str] | str | None = None,
        timeout: float | None = None,
        project_id: int | None = None,
        name: str | None = None,
        goal: str | None = None,
        run_type: str = "flow",
        metadata: dict[str, Any] | None = None,
        posted: bool = False,
        request_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> ApiRunOptions:
        if isinstance(models, str):
            models = {"*": models}
        workspace = None
        if project_id is not None:
            project = self.store.get_project(project_id)
            if project is None:
                raise LookupError(f"Project with id {project_id} not found")
            workspace = project.local_path
        return ApiRunOptions(
            models=dict(models or {}),
            timeout=timeout,
            workspace=workspace,
            project_id=project_id,
            name=name,
            goal=goal,
            run_type=run_type,
            metadata=dict(metadata or {}),
            disallow_shell=True if posted and not self.config.allow_shell else None,
            request_options=request_options,
            **kw,
        )

    def submit(
        self,
        loaded: LoadedFlow,
        inputs: dict[str, Any],
        options: ApiRunOptions,
        *,
        coerce_strings: bool = False,
    ) -> Any:
        """Create a QUEUED run and wake the worker. FlowValidationError for bad inputs."""
        try:
            rec = self.runtime.create_run(loaded, inputs, options, coerce_strings=coerce_strings)
        except FlowValidationError as exc:
            raise self._located(loaded, exc) from None
        self.kick(rec.id)
        return rec

    async def submit_async(
        self,
        loaded: LoadedFlow,
        inputs: dict[str, Any],
        options: ApiRunOptions,
        *,
        coerce_strings: bool = False,
    ) -> Any:
        """``submit`` with the write in the store's group commit (off the event loop)."""
        try:
            rec = await self.runtime.create_run_async(loaded, inputs, options, coerce_strings=coerce_strings)
        except FlowValidationError as exc:
            raise self._located(loaded, exc) from None
        self.kick(rec.id)
        return rec

    async def submit_many_async(
        self, items: list[tuple[LoadedFlow, dict[str, Any], ApiRunOptions]]
    ) -> list[Any]:
        """Several QUEUED runs from one request (``POST /api/v1/runs/bulk``): every run is
        built and validated first, and none is written if one is refused (FlowValidationError
        with its paths under ``runs[i]``); then all are written at once - their appends meet
        in the store's group commit, so a hundred runs cost a few transactions, not a hundred."""
        built = []
        for i, (loaded, inputs, options) in enumerate(items):
            try:
                built.append(self.runtime.build_run(loaded, inputs, options, coerce_strings=False))
            except FlowValidationError as exc:
                located = self._located(loaded, exc)
                raise FlowValidationError([_under(f"runs[{i}]", d) for d in located.diagnostics]) from None
        runs = await self.runtime.create_runs_async(built)
        for run in runs:
            self.hub.notify(run.id)
        self.worker.wake()
        return runs

    def _located(self, loaded: LoadedFlow, exc: FlowValidationError) -> FlowValidationError:
        # a posted document's own values (a step's model) are under "document"
        posted = loaded.source == "<request>"
        return FlowValidationError(
            [
                _under(
                    "document"
                    if posted and not d.path.startswith(("inputs", "options", "models")) and d.path
                    else "",
                    d,
                )
                for d in exc.diagnostics
            ]
        )

    def kick(self, run_id: str | None = None) -> None:
        if run_id is not None:
            self.hub.notify(run_id)
        self.worker.wake()

    async def wait(self, run_id: str, timeout: float | None = None) -> Any:
        t = min(timeout or self.config.wait_timeout, self.config.wait_timeout)
        return await wait_for_status(self.store, self.hub, run_id, t, poll_interval=self.config.poll_interval)

    async def settle(self, run_id: str, statuses: frozenset[str], timeout: float = 2.0) -> Any:
        """The run once a control took effect (or as it is after ``timeout``)."""
        return await wait_for_status(
            self.store, self.hub, run_id, timeout, statuses=statuses, poll_interval=0.05
        )

    def control(self, run_id: str, action: str, payload: dict[str, Any] | None = None) -> str:
        result = self.runtime.control(run_id, action, payload or {})
        self.kick(run_id)
        return result

    def directive(self, run_id: str, text: str) -> list[Any]:
        """Record a directive. A run executing somewhere gets it through its runner; for
        any other run the event is appended at once (Agent Runner records it either way)."""
        rec = self.runtime.get(run_id)
        held = rec.owner is not None and (rec.lease_expires_at or 0) > self.runtime.clock.now()
        if run_id in self.runtime.active or held:
            self.control(run_id, "directive", {"text": text})
            return []
        events = self.store.append(
            run_id, [NewEvent(E.DIRECTIVE, text, payload={"text": text})], self.runtime.clock.now()
        )
        self.kick(run_id)
        return events

    def rerun(self, run_id: str, step: str, unit: str | None = None, downstream: bool = False) -> list[str]:
        stale = self.runtime.request_rerun(run_id, step, unit=unit, downstream=downstream)
        self.kick(run_id)
        return stale

    def follower(self, run_id: str, after_seq: int = 0) -> EventFollower:
        return EventFollower(self.store, self.hub, run_id, after_seq, poll_interval=self.config.poll_interval)

    def is_terminal(self, rec: Any) -> bool:
        return rec is not None and rec.status in TERMINAL_STATUSES

    # -- projects -------------------------------------------------------------------------------
    def confine(self, local_path: str, loc: tuple[str, ...] = ("query", "local_path")) -> Path:
        """``local_path`` resolved (symlinks included; relative paths from the projects root,
        else the home) and checked against the trust boundaries (steps/trust.py): never at
        or above the home, never in or around a config dir or the store; inside the
        projects root when there is one, which a server other machines can reach needs.
        ProjectPathError says which rule refused it."""
        from llmflow.server.config import is_loopback

        root = self.projects_root
        try:
            p = Path(local_path).expanduser()  # "~0" (no such user): RuntimeError
            if not p.is_absolute():
                p = (root or self.runtime.settings.home) / p
            p = p.resolve()
        except (OSError, RuntimeError) as exc:
            raise ProjectPathError(f"cannot resolve local_path {local_path!r}: {exc}", loc) from None
        if root is None and not is_loopback(self.config.host):
            raise ProjectPathError(
                f"this server listens on {self.config.host}; projects must be inside a projects root: set LLMFLOW_PROJECTS_ROOT",
                loc,
            )
        if root is not None and p != root and root not in p.parents:
            raise ProjectPathError(
                f"local_path {local_path!r} is outside the projects root {root} (LLMFLOW_PROJECTS_ROOT)", loc
            )
        problem = self.runtime.trust.project_problem(p)
        if problem:
            raise ProjectPathError(f"local_path {local_path!r} cannot be a project: {problem}", loc)
        return p

    def create_project(
        self, name: str, local_path: str, loc: tuple[str, ...] = ("query", "local_path")
    ) -> Any:
        path = self.confine(local_path, loc)
        try:
            return self.store.create_project(name, str(path), self.runtime.clock.now())
        except StoreError as exc:
            if "already exists" in exc.message:
                raise RunStateError(exc.message, hint="choose another name") from None
            raise

    # -- inputs ---------------------------------------------------------------------------------
    @staticmethod
    def request_inputs(
        flow: Flow,
        *,
        prompt: str | None = None,
        text: str | None = None,
        uri: str | None = None,
        record_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Buttermilk's RunRequest mapped onto a flow's inputs: parameters by name, prompt to
        ``prompt`` (or the flow's only required / only string input), text, uri and record_id
        to inputs of the same name when the flow declares them."""
        inputs = {k: v for k, v in (parameters or {}).items() if k in flow.inputs}
        for k, v in (("text", text), ("uri", uri), ("record_id", record_id)):
            if v is not None and k in flow.inputs:
                inputs[k] = v
        if prompt is not None:
            if "prompt" in flow.inputs:
                inputs["prompt"] = prompt
            else:
                required = [
                    k
                    for k, s in flow.inputs.items()
                    if s.is_required and s.type in ("string", "any") and k not in inputs
                ]
                strings = [
                    k for k, s in flow.inputs.items() if s.type in ("string", "any") and k not in inputs
                ]
                target = required[0] if len(required) == 1 else (strings[0] if len(strings) == 1 else None)
                if target is None:
                    names = ", ".join(flow.inputs) or "none"
                    raise FlowValidationError(
                        [
                            Diagnostic(
                                "unknown-input",
                                f"flow '{flow.name}' has no 'prompt' input and no single text input to give the prompt to",
                                "prompt",
                                f"pass the inputs as parameters (inputs: {names})",
                            )
                        ]
                    )
                inputs[target] = prompt
        return inputs

    def health(self) -> dict[str, Any]:
        from llmflow import __version__

        store: dict[str, Any] = {"url": _redact(self.store.url), "ok": True}
        try:
            self.store.count_runs()
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            store.update(ok=False, error=str(exc))
        worker = self.worker.status()
        return {
            "status": "healthy" if store["ok"] else "degraded",
            "version": __version__,
            "store": store,
            "worker": worker,
            "uptime": round(time.time() - self.started_at, 1),
        }


def _under(prefix: str, d: Diagnostic) -> Diagnostic:
    """The diagnostic with its key path under ``prefix`` (``document.steps[0].llm``)."""
    if not prefix or d.path.startswith(prefix):
        return d
    from dataclasses import replace

    return replace(d, path=f"{prefix}.{d.path}" if d.path else prefix)


def _redact(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
