"""Prompt optimisation of one LLM step through DSPy (``llmflow optimize``, the ``optimize``
extra: ``pip install 'llmflow[optimize]'``).

- The step becomes a DSPy program: one ``dspy.Predict`` whose signature has the flow inputs
  the step's prompt uses as input fields and ``output`` as the output field, with the
  step's system prompt as its instructions.
- :class:`StepAdapter` formats that predictor's calls exactly as the step would send them
  (system = instructions, each demo as a user message rendered from the step's own prompt
  template and the assistant's answer, then the rendered prompt) and parses the reply as
  the output, so what DSPy optimises is the prompt the flow will really send. Other
  signatures (MIPROv2's instruction proposer) keep DSPy's ChatAdapter.
- :class:`LlmflowEngine` makes llmflow's provider layer a DSPy LM: every call the optimiser
  makes is a run of a one-step flow (``run_type: optimize``), so prompts, answers, tokens
  and cost are recorded and shown like any run's.
- The optimised step (instructions as ``system``, demos as ``messages`` before the prompt)
  is written to a new flow file next to the old one (``<name>.optimized.yaml``), and both
  flows are evaluated on the held-out records (``--dev``, else the last fifth of the
  training data) with the same metric: the before/after scores are real evaluations.

On the fake model everything is deterministic: BootstrapFewShot visits the training set in
a seeded order, and the fake model's answers depend only on the prompt.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmflow.engine.states import RunStatus
from llmflow.errors import EvalError
from llmflow.model.loader import LoadedFlow
from llmflow.model.spec import Flow, LlmStep, dump_yaml
from llmflow.runtime import RunRequest, Runtime, run_blocking

INSTALL = "pip install 'llmflow[optimize]'"
OPTIMIZERS = ("bootstrap", "mipro")
_STEPS_REF = re.compile(r"\bsteps\.")
_INPUT_REF = re.compile(r"\binputs\.([A-Za-z_][A-Za-z0-9_]*)")


def _dspy() -> Any:
    try:
        import dspy
    except ImportError:
        raise EvalError("llmflow optimize needs DSPy, which is not installed", hint=INSTALL) from None
    return dspy


def _raw(text: str) -> str:
    """Text that the step's template engine shows as is (demos may hold ``{{``)."""
    if not any(t in text for t in ("{{", "{%", "{#")):
        return text
    return (
        "{% raw %}"
        + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
        + "{% endraw %}"
    )


@dataclass
class StepTarget:
    flow: Flow
    step: LlmStep
    fields: list[str]  # the flow inputs the step's prompt uses


def step_target(flow: Flow, step_id: str) -> StepTarget:
    ids = [s.id for s in flow.all_steps()]
    if step_id not in ids:
        from llmflow.model.diagnostics import did_you_mean

        raise EvalError(
            f"flow {flow.name!r} has no step {step_id!r}",
            hint=did_you_mean(step_id, ids) or f"steps: {', '.join(ids)}",
        )
    step = flow.step(step_id)
    if not isinstance(step, LlmStep) or step.prompt is None:
        raise EvalError(
            f"step {step_id!r} is a {step.kind} step; optimize works on an llm step with a prompt"
        )
    texts = [step.prompt or "", step.system or "", *[m.content for m in step.messages or []]]
    if any(_STEPS_REF.search(t) for t in texts):
        raise EvalError(
            f"step {step_id!r} uses the outputs of other steps (steps....); optimize a step whose prompt uses only inputs and parameters"
        )
    used = list(dict.fromkeys(m.group(1) for t in texts for m in _INPUT_REF.finditer(t)))
    fields_ = [f for f in used if f in flow.inputs] or list(flow.inputs)
    if not fields_:
        raise EvalError(f"step {step_id!r} uses no flow input; there is nothing to learn from examples")
    return StepTarget(flow, step, fields_)


def render_prompt(target: StepTarget, inputs: dict[str, Any]) -> str:
    from llmflow.model.expressions import render

    # the names a step's template sees (llmflow.engine.context), for a prompt of inputs only
    ctx = {
        "inputs": {**{k: s.default for k, s in target.flow.inputs.items()}, **inputs},
        "parameters": target.flow.parameters,
        "steps": {},
        "run": {},
        "matrix": {},
        "item": None,
        "agent": {},
    }
    return render(target.step.prompt or "", ctx)


def call_flow(messages: list[tuple[str, str]], params: dict[str, Any]) -> LoadedFlow:
    """A one-step flow sending ``messages`` as they are (they arrive as inputs)."""
    doc = {
        "name": "optimize-call",
        "description": "One language-model call made by the optimizer (llmflow optimize)",
        "inputs": {f"m{i}": {"type": "string", "default": ""} for i in range(len(messages))},
        "steps": [
            {
                "id": "call",
                "kind": "llm",
                "messages": [
                    {
                        "role": r if r in ("system", "user", "assistant") else "user",
                        "content": f"{{{{ inputs.m{i} }}}}",
                    }
                    for i, (r, _) in enumerate(messages)
                ],
                "params": params,
                "stream": False,
            }
        ],
    }
    return LoadedFlow(Flow.model_validate(doc), None, "<optimize>")


class LlmflowEngine:
    """A DSPy engine (``complete(Request) -> Response``) that runs every call as an llmflow
    run on the runtime's event loop (it is called from the optimiser's thread)."""

    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop, model: str, opt_id: str) -> None:
        self.rt, self.loop, self.model, self.opt_id = rt, loop, model, opt_id
        self.calls = 0
        self.run_ids: list[str] = []
        self._lock = threading.Lock()

    def _messages(self, request: Any) -> list[tuple[str, str]]:
        msgs: list[tuple[str, str]] = []
        if request.system is not None:
            system = (
                request.system
                if isinstance(request.system, str)
                else "".join(getattr(p, "text", "") or "" for p in request.system)
            )
            msgs.append(("system", system))
        msgs += [(m.role, m.text or "") for m in request.messages]
        return msgs

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, Usage

        msgs = self._messages(request)
        cfg = request.config
        params = {
            k: v
            for k, v in (
                ("temperature", getattr(cfg, "temperature", None)),
                ("max_tokens", getattr(cfg, "max_tokens", None)),
            )
            if v is not None
        }
        with self._lock:
            self.calls += 1
            run_id = f"{self.opt_id}.call-{self.calls}"
            self.run_ids.append(run_id)
        fut = asyncio.run_coroutine_threadsafe(self._run(run_id, msgs, params), self.loop)
        rec = fut.result()
        if rec.status != RunStatus.COMPLETED:
            raise RuntimeError(f"optimizer call {run_id} {rec.status.lower()}: {rec.error}")
        text = str((rec.outputs or {}).get("result") or "")
        usage = Usage(
            input_tokens=rec.tokens_in,
            output_tokens=rec.tokens_out,
            total_tokens=rec.tokens_in + rec.tokens_out,
        )
        return Response(
            id=run_id, model=self.model, message=Message.assistant(text), finish_reason="stop", usage=usage
        )

    async def _run(self, run_id: str, msgs: list[tuple[str, str]], params: dict[str, Any]) -> Any:
        opts = RunRequest(
            models={"*": self.model},
            run_id=run_id,
            run_type="optimize",
            metadata={"optimization": self.opt_id},
        )
        rec = self.rt.create_run(
            call_flow(msgs, params), {f"m{i}": c for i, (_, c) in enumerate(msgs)}, opts, coerce_strings=False
        )
        await self.rt.execute(rec.id)
        return self.rt.get(rec.id)

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        return None


def step_adapter(target: StepTarget, placeholder: str | None) -> Any:
    """A ChatAdapter that speaks the step's own prompt for ``signature`` (see the module doc)."""
    dspy = _dspy()

    class StepAdapter(dspy.ChatAdapter):  # type: ignore[misc,name-defined]
        def _ours(self, sig: Any) -> bool:
            return list(sig.output_fields) == ["output"] and list(sig.input_fields) == target.fields

        def format(
            self, sig: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
        ) -> list[dict[str, Any]]:
            if not self._ours(sig):
                return super().format(sig, demos, inputs)
            msgs: list[dict[str, Any]] = []
            if sig.instructions and sig.instructions.strip() and sig.instructions != placeholder:
                msgs.append({"role": "system", "content": sig.instructions})
            for d in demos:
                if all(f in d for f in target.fields) and d.get("output") is not None:
                    msgs.append(
                        {"role": "user", "content": render_prompt(target, {f: d[f] for f in target.fields})}
                    )
                    msgs.append({"role": "assistant", "content": str(d["output"])})
            msgs.append(
                {"role": "user", "content": render_prompt(target, {f: inputs.get(f) for f in target.fields})}
            )
            return msgs

        def parse(self, sig: Any, completion: str) -> dict[str, Any]:
            if not self._ours(sig):
                return super().parse(sig, completion)
            return {"output": completion.strip()}

    return StepAdapter()


@dataclass
class OptimizeResult:
    optimization_id: str
    flow: str
    step: str
    optimizer: str
    output: str
    train: int
    dev: int
    demos: int
    instructions: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    calls: int
    tokens: int
    cost: float
    call_runs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["call_runs"] = self.call_runs[:20] + (["..."] if len(self.call_runs) > 20 else [])
        d["improvement"] = round(self.after["score"] - self.before["score"], 6)
        return d


def _records(path: str | None, records: list[Any] | None) -> list[dict[str, Any]]:
    from llmflow.batch.datasets import BadRow, iter_rows, open_source

    if records is not None:
        return [dict(r) for r in records]
    if not path:
        return []
    try:
        src = open_source(path)
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - DatasetError and OS errors: say which file
        raise EvalError(f"cannot read {path}: {getattr(exc, 'message', exc)}") from None
    out = []
    for _, row in iter_rows(src):
        if isinstance(row, BadRow):
            raise EvalError(f"{path}: {row.error}")
        out.append(row)
    return out


def _score(
    rt: Runtime,
    flow: Any,
    dev: list[dict[str, Any]],
    metric: Any,
    expected: str | None,
    models: dict[str, str],
    meta: dict[str, Any],
) -> dict[str, Any]:
    from llmflow.evals.runner import EvalRequest, plan_eval, run_eval

    plan = plan_eval(
        rt,
        EvalRequest(
            flow=flow,
            records=dev,
            metrics=[metric],
            expected=expected,
            models=dict(models),
            metadata=meta,
            max_workers=4,
        ),
    )
    out = run_blocking(run_eval(rt, plan))
    ov = out.summary["overall"]
    return {
        "eval_id": out.eval_id,
        "pass_rate": ov["pass_rate"],
        "score": ov["score"],
        "passed": ov["passed"],
        "total": ov["total"],
    }


async def _compile(
    rt: Runtime,
    target: StepTarget,
    train: list[dict[str, Any]],
    metric: Any,
    expected: str,
    model: str,
    optimizer: str,
    opt_id: str,
    max_demos: int,
    seed: int,
) -> tuple[Any, LlmflowEngine]:
    from llmflow.evals.metrics import Sample, ScoringContext

    dspy = _dspy()
    loop = asyncio.get_running_loop()
    engine = LlmflowEngine(rt, loop, model, opt_id)
    # the step's system prompt is the instructions; without one, a placeholder that is never sent
    placeholder = None if target.step.system else "Answer as the prompt asks."
    fields_ = {f: (str, dspy.InputField()) for f in target.fields}
    sig = dspy.make_signature(
        {**fields_, "output": (str, dspy.OutputField())}, target.step.system or placeholder
    )
    program = dspy.Predict(sig)
    examples = [
        dspy.Example(
            **{f: r.get(f) for f in target.fields}, expected=r.get(expected), output=r.get(expected)
        ).with_inputs(*target.fields)
        for r in train
    ]
    ctx = ScoringContext(runtime=rt, eval_id=opt_id)

    def dspy_metric(example: Any, pred: Any, trace: Any = None) -> Any:
        sample = Sample(
            output=getattr(pred, "output", None),
            expected=example.expected,
            inputs={f: example[f] for f in target.fields},
            record_id="train",
        )
        res = asyncio.run_coroutine_threadsafe(metric.score(sample, ctx), loop).result()
        return res.passed if trace is not None else res.score

    lm = dspy.LM(f"llmflow/{model}", engine=engine, cache=False, num_retries=0)

    def run() -> Any:
        import contextlib
        import sys
        import warnings

        # DSPy's progress bars go to stdout; keep stdout for the result (--json)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore", DeprecationWarning)  # DSPy 3.4's own migration notices
            with dspy.context(lm=lm, adapter=step_adapter(target, placeholder)):
                if optimizer == "mipro":
                    opt = dspy.MIPROv2(
                        metric=dspy_metric,
                        auto=None,
                        num_candidates=2,
                        max_bootstrapped_demos=max_demos,
                        max_labeled_demos=max_demos,
                        seed=seed,
                        verbose=False,
                        num_threads=1,
                    )
                    return opt.compile(program, trainset=examples, num_trials=2, minibatch=False)
                opt = dspy.BootstrapFewShot(
                    metric=dspy_metric,
                    max_bootstrapped_demos=max_demos,
                    max_labeled_demos=max_demos,
                    max_rounds=1,
                )
                return opt.compile(program, trainset=examples)

    try:
        compiled = await asyncio.to_thread(run)
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - DSPy's errors (unparseable answers, ...) become a message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = (
            "MIPROv2 asks the model to answer in DSPy's [[ ## field ## ]] format; a small or fake model may not: try --optimizer bootstrap"
            if optimizer == "mipro"
            else "see the optimizer's recorded runs: llmflow runs list"
        )
        raise EvalError(
            f"the {optimizer} optimizer failed after {engine.calls} call(s): {type(exc).__name__}: {first}",
            hint=hint,
        ) from None
    return compiled, engine


def optimized_flow(
    target: StepTarget, instructions: str | None, demos: list[tuple[dict[str, Any], str]]
) -> Flow:
    """The flow with the step's instructions and few-shot demonstrations in place."""
    doc = target.flow.to_dict()

    def patch(steps: list[dict[str, Any]]) -> None:
        for s in steps:
            if s.get("id") == target.step.id:
                if instructions:
                    s["system"] = instructions
                msgs = []
                for inputs, output in demos:
                    msgs.append({"role": "user", "content": _raw(render_prompt(target, inputs))})
                    msgs.append({"role": "assistant", "content": _raw(output)})
                s["messages"] = [*msgs, *(s.get("messages") or [])]
            for v in s.values():
                if isinstance(v, list) and v and isinstance(v[0], dict) and "id" in v[0]:
                    patch(v)

    patch(doc["steps"])
    desc = doc.get("description") or ""
    doc["description"] = (
        desc + " " if desc else ""
    ) + f"(step {target.step.id} optimized by llmflow optimize: {len(demos)} demonstrations)"
    return Flow.model_validate(doc).validated()


def optimize(
    flow: Any,
    *,
    step: str,
    data: str | None = None,
    records: list[Any] | None = None,
    metric: Any = "exact",
    dev: str | None = None,
    dev_records: list[Any] | None = None,
    expected: str | None = None,
    optimizer: str = "bootstrap",
    max_demos: int = 4,
    output: str | Path | None = None,
    models: dict[str, str] | None = None,
    seed: int = 0,
    runtime: Runtime | None = None,
    home: str | Path | None = None,
) -> OptimizeResult:
    """Improve one LLM step's instructions and few-shot demonstrations with DSPy, write the
    optimized flow next to the old one, and score both on the held-out records::

        res = llmflow.optimize("flow.yaml", step="classify", data="train.jsonl", metric="exact")
        res.before["score"], res.after["score"], res.output

    ``optimizer``: ``bootstrap`` (BootstrapFewShot) or ``mipro`` (MIPROv2, which also
    rewrites the instructions and costs more calls)."""
    from llmflow.evals.api import _runtime
    from llmflow.evals.declare import parse_metric
    from llmflow.evals.runner import EXPECTED_COLUMNS, new_eval_id

    if optimizer not in OPTIMIZERS:
        raise EvalError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    if max_demos < 1:
        raise EvalError("--max-demos must be at least 1")
    _dspy()
    rt = _runtime(runtime, home)  # the process's shared runtime unless one is given
    loaded = rt.load(flow) if not isinstance(flow, LoadedFlow) else flow
    target = step_target(loaded.flow, step)
    m = parse_metric(metric)
    if data is None and records is None and isinstance(loaded.flow.data, list):
        records = loaded.flow.data  # a playbook's scenarios, or the flow's inline data
    train = _records(data, records)
    held = _records(dev, dev_records)
    if not train:
        raise EvalError("no training records", hint="--data train.jsonl")
    if not held:
        if len(train) < 2:
            raise EvalError("need at least 2 records to hold some out", hint="give --dev dev.jsonl")
        cut = max(1, len(train) // 5)
        train, held = train[:-cut], train[-cut:]
    column = expected or next((c for c in EXPECTED_COLUMNS if c in train[0]), None)
    if column is None or column not in train[0]:
        raise EvalError(
            "the training data has no expected column (expected, label, answer, ...)",
            hint="name it with --expected COLUMN",
        )
    from llmflow.engine.models import resolve_model

    agent = loaded.flow.agents.get(target.step.agent) if target.step.agent else None
    model, _ = resolve_model(
        target.step, loaded.flow, agent=agent, run_models=models or {}, env=rt.settings.env_models
    )
    opt_id = new_eval_id().replace("eval-", "opt-", 1)
    meta = {"optimization": opt_id}
    before = _score(rt, loaded, held, metric, column, models or {}, {**meta, "phase": "before"})
    compiled, engine = run_blocking(
        _compile(rt, target, train, m, column, model, optimizer, opt_id, max_demos, seed)
    )
    pred = compiled.predictors()[0]
    demos = [
        ({f: d[f] for f in target.fields}, str(d["output"]))
        for d in pred.demos
        if all(f in d for f in target.fields) and d.get("output") is not None
    ]
    instr = pred.signature.instructions if optimizer == "mipro" or target.step.system else None
    new = optimized_flow(target, instr, demos)
    src = (
        Path(loaded.source)
        if loaded.source and not loaded.source.startswith("<")
        else Path.cwd() / f"{loaded.flow.name}.yaml"
    )
    base = src / "flow.yaml" if src.is_dir() else src
    out = (Path(output) if output else base.with_name(base.stem + ".optimized.yaml")).resolve()
    out.write_text(
        f"# Optimized by `llmflow optimize --step {step}` ({optimizer}, {len(demos)} demonstrations) from {src.name}\n"
        + dump_yaml(new.to_dict()),
        encoding="utf-8",
    )
    after = _score(rt, str(out), held, metric, column, models or {}, {**meta, "phase": "after"})
    runs = [rt.store.get_run(r) for r in engine.run_ids]
    tokens = sum(r.tokens_in + r.tokens_out for r in runs if r)
    cost = sum(r.cost for r in runs if r)
    return OptimizeResult(
        opt_id,
        loaded.flow.name,
        step,
        optimizer,
        str(out),
        len(train),
        len(held),
        len(demos),
        instr,
        before,
        after,
        engine.calls,
        tokens,
        cost,
        engine.run_ids,
    )
