"""A new run's record, validated: the flow loaded, the inputs checked and coerced, the
tools and the model choices checked (an unknown step, provider or missing key is refused
now, before anything is written), the choices the run keeps for life resolved."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.engine.events import NewEvent
from llmflow.engine.payloads import RunCreated
from llmflow.engine.states import RunStatus
from llmflow.errors import FlowValidationError
from llmflow.model.diagnostics import Location
from llmflow.model.spec import Flow
from llmflow.model.validate import validate_inputs
from llmflow.runtime.options import RunRequest, new_run_id
from llmflow.store.base import RunRecord

if TYPE_CHECKING:
    from llmflow.runtime.service import Runtime


def _check_model_steps(flow: Flow, models: dict[str, str]) -> None:
    """Every step a per-run model choice names exists (``*`` is every step)."""
    ids = None
    for step in models:
        if step == "*":
            continue
        ids = ids or {s.id for s in flow.all_steps()}
        if step not in ids:
            from llmflow.model.diagnostics import Diagnostic, did_you_mean

            raise FlowValidationError(
                [
                    Diagnostic(
                        "unknown-step",
                        f"--model names unknown step '{step}'",
                        f"models.{step}",
                        did_you_mean(step, sorted(ids)) or "use STEP=provider:model",
                    )
                ]
            )


def build_run(
    rt: Runtime,
    flow_ref: Any,
    inputs: dict[str, Any] | None = None,
    options: RunRequest | None = None,
    *,
    overrides: list[str] | None = None,
    coerce_strings: bool = True,
    choices: dict[str, Any] | None = None,
    claim: bool = False,
    spec_record: dict[str, Any] | None = None,
) -> tuple[RunRecord, list[NewEvent]]:
    """The validated run record and its creation event (nothing written)."""
    flows = rt.run_flows
    loaded = flows.load(flow_ref, overrides)
    flow = loaded.flow
    options = options or RunRequest()
    clean, diags = validate_inputs(flow, dict(inputs or {}), coerce_strings=coerce_strings)
    if diags:  # located in the flow's file (not "<flow>") when it has one
        raise FlowValidationError(
            [
                d
                if d.location.file or d.location.origin or loaded.source.startswith("<")
                else replace(d, location=Location(file=loaded.source))
                for d in diags
            ]
        )
    if options.thread is not None or flows.uses_tools(flow):
        from llmflow.tools.check import check_loaded

        diags = check_loaded(loaded, rt.tool_services, rt.functions, thread=options.thread)
        if diags:
            raise FlowValidationError(diags)
    if options.models:
        _check_model_steps(flow, options.models)
    flows.check_models(loaded, options.models)  # unknown provider, no key: refused now
    now = rt.clock.now()
    opts = options.to_dict()
    opts["choices"] = choices if choices is not None else flows.choices(flow, dict(options.models))
    run = RunRecord(
        id=options.run_id or new_run_id(),
        flow_name=flow.name,
        status=RunStatus.QUEUED,
        created_at=now,
        inputs=clean,
        spec=spec_record if spec_record is not None else flows.spec_record(loaded),
        fingerprint=flows.fingerprint(flow),
        options=opts,
        metadata={**options.metadata, **({"thread": options.thread} if options.thread else {})},
        parent_run_id=options.parent_run_id,
        batch_id=options.batch_id,
        project_id=options.project_id,
        name=options.name,
        goal=options.goal,
        run_type=options.run_type,
        owner=rt.owner if claim else None,
        lease_expires_at=now + rt.settings.lease_seconds if claim else None,
    )
    return run, [
        NewEvent(
            E.RUN_CREATED,
            f"Run created for flow {flow.name}",
            # the payload decorator hides the dataclass constructor from mypy (engine/payloads.py)
            payload=RunCreated(flow=flow.name, version=flow.version, inputs=clean),  # type: ignore[call-arg]
        )
    ]
