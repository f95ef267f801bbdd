"""LLM-as-judge: a model grades an output against a rubric, as a run of its own.

The judge is a one-step flow run through the runtime, so its prompt, answer, tokens and
cost are recorded like any run's (``run_type: judge``) and the score links to it. Its run
id is ``{judged run}.judge-{metric}.{seq}`` (``seq``: the judged run's last event when it
was scored), so resuming an evaluation reuses a judgment that finished and continues one
that was cut off, and a re-run of the judged run is judged again. The rubric, the input
and the output reach the judge as flow inputs, never as template text.
"""

from __future__ import annotations

from typing import Any

from llmflow.batch.jobs import safe_part
from llmflow.engine.states import RUN_TERMINAL, RunStatus
from llmflow.evals.metrics import Metric, Sample, ScoringContext, as_text
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}

SYSTEM = (
    "You are a strict, fair grader. Grade the output against the rubric. Answer with only a JSON "
    'object: {"score": a number from 0 (fails the rubric) to 1 (fully meets it), "reason": one sentence}.'
)

PROMPT = """Rubric:
{{ inputs.rubric }}

Input:
{{ inputs.input }}

Output to grade:
{{ inputs.output }}
{% if inputs.expected %}
Reference answer:
{{ inputs.expected }}
{% endif %}"""


def judge_flow(params: dict[str, Any] | None = None) -> LoadedFlow:
    flow = Flow.model_validate(
        {
            "name": "judge",
            "description": "LLM-as-judge: grades an output against a rubric (llmflow eval)",
            "inputs": {
                k: {"type": "string", "default": ""} for k in ("rubric", "input", "output", "expected")
            },
            "steps": [
                {
                    "id": "grade",
                    "kind": "llm",
                    "system": SYSTEM,
                    "prompt": PROMPT,
                    "output": SCHEMA,
                    "params": dict(params or {}),
                    "stream": False,
                }
            ],
            "outputs": {
                "score": "{{ steps.grade.output.score }}",
                "reason": "{{ steps.grade.output.reason }}",
            },
        }
    )
    return LoadedFlow(flow, None, "<judge>")


def judge_run_id(sample: Sample, metric_name: str) -> str:
    return f"{sample.run_id}.judge-{safe_part(metric_name)}.{sample.run_seq}"


async def judge(metric: Metric, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
    from llmflow.runtime import RunRequest

    rt = ctx.runtime
    if rt is None:
        raise RuntimeError("the judge metric needs a runtime to run the judge")
    run_id = judge_run_id(sample, metric.name)
    rec = rt.store.get_run(run_id)
    if rec is None:
        inputs = sample.inputs
        shown_input = as_text(next(iter(inputs.values()))) if len(inputs) == 1 else as_text(inputs)
        model = metric.options.get("model")
        opts = RunRequest(
            models={"*": model} if model else {},
            run_id=run_id,
            run_type="judge",
            metadata={
                "eval_id": ctx.eval_id,
                "judged_run": sample.run_id,
                "metric": metric.name,
                "record_id": sample.record_id,
            },
        )
        values = {
            "rubric": metric.options["rubric"],
            "input": shown_input,
            "output": as_text(metric.select(sample)),
            "expected": as_text(sample.expected),
        }
        rec = rt.create_run(judge_flow(metric.options.get("params")), values, opts, coerce_strings=False)
    if rec.status not in RUN_TERMINAL:
        await rt.execute(run_id)
        rec = rt.get(run_id)
    details = {"judge_run_id": run_id}
    if rec.status != RunStatus.COMPLETED:
        return 0.0, f"the judge's run {run_id} {rec.status.lower()}: {rec.error or ''}".strip(), details
    out = rec.outputs or {}
    try:
        score = float(out.get("score"))  # type: ignore[arg-type]  # None and text fail below
    except (TypeError, ValueError):
        return 0.0, f"the judge answered no score ({out!r}); see run {run_id}", details
    return score, str(out.get("reason") or f"judged {score:.2f}"), details
