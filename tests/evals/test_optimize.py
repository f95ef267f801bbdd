"""`llmflow optimize` through DSPy on the scripted fake model (deterministic): the adapter
makes llmflow's provider layer a DSPy LM (every call a recorded run) and speaks the step's
own prompt; BootstrapFewShot and MIPROv2; the optimized flow and its before/after scores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmflow.errors import EvalError
from llmflow.runtime import build_runtime

pytest.importorskip("dspy", reason="the optimize extra is not installed (pip install 'llmflow[optimize]')")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "optimize"


@pytest.fixture
def ex(tmp_path: Path) -> Path:
    d = tmp_path / "optimize"
    shutil.copytree(EXAMPLE, d)
    return d


def runtime(home: Path) -> Any:
    return build_runtime(
        env={"LLMFLOW_BLOCK_REAL_MODELS": "1", "LLMFLOW_FAKE_SCRIPTS": str(home / "fake-scripts.yaml")},
        home=home,
    )


def test_bootstrap_few_shot_writes_the_optimized_flow_and_scores_it_before_and_after(ex: Path) -> None:
    import llmflow

    rt = runtime(ex)
    try:
        res = llmflow.optimize(
            str(ex / "flow.yaml"),
            step="classify",
            data=str(ex / "train.jsonl"),
            dev=str(ex / "dev.jsonl"),
            metric="exact",
            models={"*": "fake:topic"},
            max_demos=2,
            runtime=rt,
        )
        assert (res.train, res.dev, res.demos, res.instructions) == (8, 4, 2, None)
        assert (res.before["pass_rate"], res.after["pass_rate"]) == (0.0, 1.0)
        out = Path(res.output)
        assert out == ex / "flow.optimized.yaml"
        from llmflow.model.loader import load_flow

        step = load_flow(out).flow.step("classify")
        assert step.prompt == "Topic of: {{ inputs.text }}"
        assert [m.role for m in step.messages] == ["user", "assistant", "user", "assistant"]
        assert step.messages[0].content.startswith("Topic of: ") and step.messages[1].content in (
            "sport",
            "politics",
        )
        # every optimizer call is a run, holding the prompt the step itself would send
        assert res.calls == len(res.call_runs) >= 2
        call = rt.store.get_run(res.call_runs[0])
        assert (
            call.run_type == "optimize"
            and call.metadata["optimization"] == res.optimization_id
            and call.status == "COMPLETED"
        )
        sent = [v for k, v in sorted(call.inputs.items())]
        assert sent[-1].startswith("Topic of: ") and any(s.startswith("Topic of: ") for s in sent[:-1])
        assert [a.model for a in rt.store.attempts(call.id)] == ["fake:topic"]
        # the before/after scores are stored evaluations
        assert rt.store.get_eval(res.before["eval_id"]).summary["overall"]["total"] == 4
        first = out.read_text()
        again = llmflow.optimize(
            str(ex / "flow.yaml"),
            step="classify",
            data=str(ex / "train.jsonl"),
            dev=str(ex / "dev.jsonl"),
            models={"*": "fake:topic"},
            max_demos=2,
            runtime=rt,
        )
        assert Path(again.output).read_text() == first  # deterministic on the fake model
    finally:
        rt.close()


def test_mipro_also_rewrites_the_instructions(ex: Path) -> None:
    import llmflow

    rt = runtime(ex)
    try:
        res = llmflow.optimize(
            str(ex / "flow.yaml"),
            step="classify",
            data=str(ex / "train.jsonl"),
            dev=str(ex / "dev.jsonl"),
            optimizer="mipro",
            models={"*": "fake:topic"},
            max_demos=2,
            output=str(ex / "mipro.yaml"),
            runtime=rt,
        )
        assert res.instructions == "Name the topic of the text in one word: sport or politics."
        from llmflow.model.loader import load_flow

        assert load_flow(ex / "mipro.yaml").flow.step("classify").system == res.instructions
        assert res.after["score"] >= res.before["score"] and res.calls > 10
    finally:
        rt.close()


def test_the_adapter_formats_demos_with_the_steps_prompt_and_escapes_templates() -> None:
    import dspy

    from llmflow.evals.optimize import optimized_flow, step_adapter, step_target
    from llmflow.model.spec import Flow

    flow = Flow.model_validate(
        {
            "name": "f",
            "inputs": {"q": "string", "unused": "string"},
            "steps": [{"id": "s", "llm": {"prompt": "Q: {{ inputs.q }}", "system": "Be brief."}}],
        }
    )
    target = step_target(flow, "s")
    assert target.fields == ["q"]
    sig = dspy.make_signature(
        {"q": (str, dspy.InputField()), "output": (str, dspy.OutputField())}, "Be brief."
    )
    msgs = step_adapter(target, None).format(sig, [{"q": "one", "output": "1"}], {"q": "two"})
    assert msgs == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: one"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Q: two"},
    ]
    assert step_adapter(target, None).parse(sig, "  2 \n") == {"output": "2"}
    new = optimized_flow(target, None, [({"q": "{{ 7*6 }}"}, "a {% raw %} b")])
    from llmflow.model.expressions import render

    shown = [render(m.content, {"inputs": {}}) for m in new.step("s").messages]
    assert shown == ["Q: {{ 7*6 }}", "a {% raw %} b"]  # demos are shown as written, never run as templates


def test_bad_requests_fail_with_a_message(ex: Path) -> None:
    import llmflow

    rt = runtime(ex)
    try:
        with pytest.raises(EvalError, match="no step 'clasify'") as e:
            llmflow.optimize(str(ex / "flow.yaml"), step="clasify", data=str(ex / "train.jsonl"), runtime=rt)
        assert "classify" in (e.value.hint or "")
        (ex / "two.yaml").write_text(
            "name: two\ninputs: {t: string}\nsteps:\n  - {id: a, llm: 'A {{ inputs.t }}'}\n  - {id: b, llm: 'B {{ steps.a.output }}'}\n"
        )
        with pytest.raises(EvalError, match="uses the outputs of other steps"):
            llmflow.optimize(str(ex / "two.yaml"), step="b", data=str(ex / "train.jsonl"), runtime=rt)
        with pytest.raises(EvalError, match="no expected column"):
            llmflow.optimize(
                str(ex / "flow.yaml"), step="classify", records=[{"text": "a"}, {"text": "b"}], runtime=rt
            )
        with pytest.raises(EvalError, match="--optimizer must be one of"):
            llmflow.optimize(
                str(ex / "flow.yaml"),
                step="classify",
                data=str(ex / "train.jsonl"),
                optimizer="gepa",
                runtime=rt,
            )
    finally:
        rt.close()


def _cli(ex: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    e.update(
        {
            "LLMFLOW_HOME": str(ex),
            "LLMFLOW_FAKE_SCRIPTS": str(ex / "fake-scripts.yaml"),
            "LLMFLOW_BLOCK_REAL_MODELS": "1",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "llmflow", *args], capture_output=True, text=True, env=e, cwd=ex, timeout=300
    )


def test_the_cli_prints_json_on_a_clean_stdout(ex: Path) -> None:
    p = _cli(
        ex,
        "optimize",
        "flow.yaml",
        "--step",
        "classify",
        "-d",
        "train.jsonl",
        "--dev",
        "dev.jsonl",
        "--model",
        "fake:topic",
        "--max-demos",
        "2",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["improvement"] == 1.0 and out["output"].endswith("flow.optimized.yaml")
    bad = _cli(ex, "optimize", "flow.yaml", "--step", "nope", "-d", "train.jsonl")
    assert bad.returncode == 2 and "no step 'nope'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
@pytest.mark.real_model
def test_optimize_on_the_embedded_model(ex: Path) -> None:
    p = _cli(
        ex,
        "optimize",
        "flow.yaml",
        "--step",
        "classify",
        "-d",
        "train.jsonl",
        "--dev",
        "dev.jsonl",
        "--metric",
        "contains",
        "--model",
        "local:gemma3-270m",
        "--max-demos",
        "2",
        "--json",
        LLMFLOW_BLOCK_REAL_MODELS="0",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["demos"] >= 0 and out["calls"] >= 1 and out["tokens"] > 0
    assert 0.0 <= out["before"]["score"] <= 1.0 and 0.0 <= out["after"]["score"] <= 1.0
    assert (ex / "flow.optimized.yaml").exists()
