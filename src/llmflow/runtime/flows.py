"""The flows a runtime's runs use, each prepared once: loaded (composed and cached by file
stamps), recorded, fingerprinted, planned, checked for models and tools, and the choices a
run of it keeps; and a recorded run's flow, checked against its source when it resumes.

Every cache is keyed by the flow object's ``id`` and checks the object itself on a hit
(specs are immutable; an id reused by a new object misses), and is bounded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.engine.models import resolve_model
from llmflow.engine.state import FlowPlan, plan_flow
from llmflow.errors import ResumeRefusedError
from llmflow.model.loader import LoadedFlow, restore_secrets
from llmflow.model.spec import BroadcastStep, Flow
from llmflow.providers.preflight import check_run_models
from llmflow.runtime.flowcache import FlowCache

if TYPE_CHECKING:
    from llmflow.settings import Settings
    from llmflow.store.base import RunRecord

LLM_KINDS = ("llm", "broadcast", "conductor")
_BOUND = 256  # entries per cache


def changed_keys(a: Any, b: Any, path: str = "") -> list[str]:
    """The key paths where two JSON-like values differ (``steps[1].prompt``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += changed_keys(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += changed_keys(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path or "(root)"]


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) > _BOUND:
        cache.clear()
    cache[key] = value


class RunFlows:
    def __init__(self, settings: Settings, gateway: Any, cache: FlowCache | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.cache = cache or FlowCache()
        self._flows: dict[str, Flow] = {}  # fingerprint -> validated Flow (specs are immutable)
        self._fingerprints: dict[int, tuple[Flow, str]] = {}
        self._plans: dict[int, FlowPlan] = {}
        # id(LoadedFlow or Flow) -> (it, its spec record, source)
        self._records: dict[int, tuple[Any, dict[str, Any], str]] = {}
        self._choices: dict[Any, dict[str, Any]] = {}
        self._tooled: dict[int, tuple[Flow, bool]] = {}
        # (flow id, run models) -> the flow whose models passed the preflight
        self._checked: dict[Any, Flow] = {}

    def load(
        self, flow_ref: str | Path | Flow | LoadedFlow, overrides: list[str] | None = None
    ) -> LoadedFlow:
        if isinstance(flow_ref, LoadedFlow):
            return flow_ref
        if isinstance(flow_ref, Flow):
            return LoadedFlow(flow_ref, None, "<python>")
        return self.cache.load(flow_ref, list(overrides or []), self.settings.config_dir)

    def spec_record(self, loaded: LoadedFlow) -> dict[str, Any]:
        """What a run stores of its flow: the resolved spec and where it came from."""
        if loaded.composed is not None:
            hit = self._records.get(id(loaded))
            if hit is not None and hit[0] is loaded:  # a flow loaded elsewhere (a server's catalog), again
                return hit[1]
            rec = self.cache.record(loaded)
            # ``source`` is shown relative to the working directory; a process resuming the
            # run elsewhere (sub-flows, the source check) needs the absolute path too
            rec.setdefault("source_path", str(loaded.composed.target.flow_file))
            _put(self._records, id(loaded), (loaded, rec, loaded.source))
            return rec
        # a flow built in Python: the same Flow object gives the same record
        hit = self._records.get(id(loaded.flow))
        if hit is not None and hit[0] is loaded.flow and hit[2] == loaded.source:
            return hit[1]
        rec = loaded.record()
        _put(self._records, id(loaded.flow), (loaded.flow, rec, loaded.source))
        return rec

    def plan_of(self, flow: Flow) -> FlowPlan:
        p = self._plans.get(id(flow))
        if p is None or p.flow is not flow:
            p = plan_flow(flow)
            _put(self._plans, id(flow), p)
        return p

    def fingerprint(self, flow: Flow) -> str:
        hit = self._fingerprints.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1]
        fp = flow.fingerprint()
        _put(self._fingerprints, id(flow), (flow, fp))
        self._flows.setdefault(fp, flow)
        return fp

    def uses_tools(self, flow: Flow) -> bool:
        """Whether the flow declares tools (only then is there anything for the tool check to
        look at); once per flow object."""
        hit = self._tooled.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1]
        from llmflow.tools.check import tool_entries

        uses = next(iter(tool_entries(flow)), None) is not None
        _put(self._tooled, id(flow), (flow, uses))
        return uses

    def check_models(self, loaded: LoadedFlow, run_models: dict[str, str]) -> None:
        """``check_run_models``, once per flow object and model choice: the registry, the
        environment and the installed extras are fixed for this runtime (the check reads
        the plugin entry points, tens of milliseconds with many packages installed)."""
        key = (id(loaded.flow), tuple(sorted(run_models.items())))
        hit = self._checked.get(key)
        if hit is not None and hit is loaded.flow:
            return
        check_run_models(self.gateway, loaded, run_models, self.settings.env_models)
        _put(self._checked, key, loaded.flow)

    # -- choices -------------------------------------------------------------------------------
    def choices(self, flow: Flow, run_models: dict[str, str]) -> dict[str, Any]:
        """What a run is created with and keeps: the models each LLM step resolves to (and
        what chose them), the environment's model settings, the behaviour settings."""
        s = self.settings
        key = (id(flow), tuple(sorted(run_models.items())), tuple(sorted(s.env_models.items())))
        hit = self._choices.get(key)
        if hit is not None and hit["_flow"] is flow:
            return {k: v for k, v in hit.items() if k != "_flow"}
        models: dict[str, dict[str, str]] = {}
        for step in flow.all_steps():
            if step.kind not in LLM_KINDS:
                continue
            agents = list(step.agents) if isinstance(step, BroadcastStep) else [getattr(step, "agent", None)]
            for a in agents:
                agent = flow.agents.get(a) if a else None
                model, source = resolve_model(
                    step, flow, agent=agent, run_models=run_models, env=s.env_models
                )
                models[f"{step.id}[{a}]" if isinstance(step, BroadcastStep) else step.id] = {
                    "model": model,
                    "source": source,
                }
        out = {
            "models": models,
            "env_models": dict(s.env_models),
            "settings": {
                "allow_shell": s.allow_shell,
                "max_units": s.max_units,
                "human_timeout": s.human_timeout,
                "block_real_models": s.block_real_models,
            },
            "flow_version": flow.version,
        }
        _put(self._choices, key, {**out, "_flow": flow})
        return out

    @staticmethod
    def child_choices(flow: Flow, run_models: dict[str, str], parent: dict[str, Any]) -> dict[str, Any]:
        """A child run's choices: its own flow's models, resolved with the parent's recorded
        environment and settings."""
        env = parent.get("env_models") or {}
        models: dict[str, dict[str, str]] = {}
        for step in flow.all_steps():
            if step.kind in LLM_KINDS and not isinstance(step, BroadcastStep):
                agent_name = getattr(step, "agent", None)
                model, source = resolve_model(
                    step,
                    flow,
                    agent=flow.agents.get(agent_name) if agent_name else None,
                    run_models=run_models,
                    env=env,
                )
                models[step.id] = {"model": model, "source": source}
        return {**parent, "models": models, "flow_version": flow.version}

    # -- a recorded run's flow -----------------------------------------------------------------
    def stored_flow(self, rec: RunRecord) -> Flow:
        f = self._flows.get(rec.fingerprint)
        if f is None:  # secrets were stored as their ${oc.env:...}: read them from this process's env
            f = Flow.model_validate(
                restore_secrets(rec.spec["flow"], rec.spec["secrets"], self.settings.env)
                if rec.spec.get("secrets")
                else rec.spec["flow"]
            )
            _put(self._flows, rec.fingerprint, f)
        return f

    def flow_of(self, rec: RunRecord, *, force: bool = False, check_source: bool = True) -> Flow:
        """The flow a run continues with: the recorded one, unless its source file changed
        since (refused, or the new definition with ``force``)."""
        stored = self.stored_flow(rec)
        source = rec.spec.get("source_path") or rec.spec.get("source")
        if not check_source or not source or source.startswith("<") or not Path(source).exists():
            return stored
        try:
            current = self.cache.load(source, rec.spec.get("overrides") or [], self.settings.config_dir).flow
        except Exception:  # noqa: BLE001 - an unloadable source: keep running what was recorded
            return stored
        if current is stored or self.fingerprint(current) == rec.fingerprint:
            return stored
        changed = changed_keys(stored.to_dict(), current.to_dict())
        if not force:
            raise ResumeRefusedError(
                f"flow {rec.flow_name!r} changed since run {rec.id} started ({source}): "
                + ", ".join(changed[:8])
                + (" ..." if len(changed) > 8 else ""),
                hint="restore the flow, or pass --force to continue with the new definition",
            )
        return current
