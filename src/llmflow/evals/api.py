"""The Python API: ``llmflow.evaluate(...)`` (and what the CLI and the server share to turn a
target into an evaluation request).

A target is a flow (file, directory or name), an eval file (``eval.yaml``, or a
directory holding one), or a SuperOptiX playbook (its scenarios are the data and its
default metric is ``bdd``, SuperOptiX's scenario check).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.errors import EvalError
from llmflow.evals.config import find_eval_file, load_eval_file
from llmflow.evals.playbook import read_playbook
from llmflow.evals.runner import EvalOutcome, EvalRequest, evaluation_view, plan_eval, run_eval
from llmflow.runtime import Runtime, run_blocking


@dataclass
class Target:
    request: EvalRequest
    playbook: dict[str, Any] | None = None  # the playbook document, when the target is one
    eval_file: str | None = None


def parse_rate(value: Any) -> float | None:
    """``0.8``, ``80%`` or ``80`` -> 0.8."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        x = float(text.rstrip("%"))
    except ValueError:
        raise EvalError(f"pass rate {value!r} is not a number", hint="write 0.8 or 80%") from None
    if text.endswith("%") or x > 1:
        x /= 100
    if not 0 <= x <= 1:
        raise EvalError(f"pass rate {value!r} is not between 0 and 1 (0% and 100%)")
    return x


def parse_variants(items: list[str] | dict[str, Any] | None) -> dict[str, list[Any]]:
    """``["model=fake:a,fake:b", "style=terse,chatty"]`` -> axes; a mapping passes through."""
    if isinstance(items, dict):
        return {str(k): list(v) if isinstance(v, list | tuple) else [v] for k, v in items.items()}
    out: dict[str, list[Any]] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise EvalError(
                f"--variants {it!r}: expected KEY=VALUE1,VALUE2",
                hint="for example --variants model=fake:a,fake:b",
            )
        import yaml

        values = [yaml.safe_load(x) if x.strip() else x for x in v.split(",")]
        out.setdefault(k.strip(), []).extend(values)
    return out


def target_request(target: str | Path | Any, **options: Any) -> Target:
    """An :class:`EvalRequest` for ``target`` with ``options`` (EvalRequest fields; None and
    empty values leave the eval file's or the default in place)."""
    given = {k: v for k, v in options.items() if v not in (None, [], {})}
    playbook = None
    eval_file = None
    req = EvalRequest(flow=target)
    if isinstance(target, str | Path):
        ef_path = find_eval_file(str(target))
        if ef_path is not None:
            ef = load_eval_file(ef_path)
            eval_file = str(ef_path)
            req = EvalRequest(
                flow=ef.flow,
                data=ef.data,
                expected=ef.expected,
                metrics=list(ef.metrics),
                declared=ef.declared(),
                variants=dict(ef.variants),
                min_pass_rate=ef.min_pass_rate,
                columns=dict(ef.columns),
                record_id=ef.record_id,
                max_records=ef.max_records,
            )
        playbook = read_playbook(req.flow) if isinstance(req.flow, str | Path) else None
        if playbook is not None:
            req.default_metrics = ["bdd"]
            req.expected = req.expected or "expected_output"
    for k, v in given.items():
        if not hasattr(req, k):
            raise TypeError(f"evaluate() got an unexpected option {k!r}")
        setattr(req, k, v)
    return Target(req, playbook, eval_file)


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: the stored evaluation's view."""

    id: str
    status: str
    summary: dict[str, Any]
    results: list[dict[str, Any]]
    view: dict[str, Any] = field(repr=False, default_factory=dict)
    gate_failed: list[str] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        return float(self.summary["overall"]["pass_rate"])

    @property
    def passed(self) -> bool:
        """Completed, and every variant meets the minimum pass rate (when one was given)."""
        return self.status == "COMPLETED" and not self.gate_failed

    def report(self, fmt: str = "table") -> str:
        from llmflow.evals.report import render

        return render(self.view, fmt)


def _runtime(runtime: Runtime | None, home: str | Path | None) -> Runtime:
    if runtime is not None:
        return runtime
    from llmflow.runtime.root import shared_runtime

    # the process's shared runtime and store, as run / run_sync / Runner use (closed at exit)
    return shared_runtime(Path(home) if home else None)


async def evaluate_async(
    target: Any = None, *, runtime: Runtime | None = None, home: str | Path | None = None, **options: Any
) -> Evaluation:
    rt = _runtime(runtime, home)
    t = target_request(target, **options)
    plan = await asyncio.to_thread(plan_eval, rt, t.request)
    outcome: EvalOutcome = await run_eval(rt, plan)
    view = evaluation_view(rt.store, outcome.eval_id) or {}
    return Evaluation(
        outcome.eval_id,
        outcome.status,
        view["summary"],
        view["results"],
        view,
        outcome.gate(t.request.min_pass_rate or plan.record.spec.get("min_pass_rate")),
    )


def evaluate(
    target: Any = None, *, runtime: Runtime | None = None, home: str | Path | None = None, **options: Any
) -> Evaluation:
    """Evaluate a flow over a dataset and score every record (see docs/evals.md)::

        ev = llmflow.evaluate("flow.yaml", data="cases.jsonl", metrics=["exact", "contains=ok"])
        ev.pass_rate, ev.summary["variants"], ev.results[0]["run_id"], ev.report("junit")

    ``target``: a flow (path, name, :class:`~llmflow.Flow`), an eval file or a SuperOptiX
    playbook. Options: ``data``, ``records`` (a list of dicts), ``metrics`` (declarations
    or ``@llmflow.metric`` functions), ``variants`` ({axis: [values]}), ``expected``
    (column), ``max_records``, ``max_workers``, ``min_pass_rate``, ``models``,
    ``overrides``, ``resume`` (an evaluation id), and the other :class:`EvalRequest`
    fields. Works in scripts and inside a running event loop (notebooks)."""
    return run_blocking(evaluate_async(target, runtime=runtime, home=home, **options))


def show(eval_id: str, *, runtime: Runtime | None = None, home: str | Path | None = None) -> dict[str, Any]:
    view = evaluation_view(_runtime(runtime, home).store, eval_id)
    if view is None:
        raise EvalError(f"no evaluation {eval_id!r}", hint="list them with `llmflow evals list`")
    return view
