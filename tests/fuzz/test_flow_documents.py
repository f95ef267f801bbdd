"""Hypothesis over flow documents, through `validate` and through a real run on the fake
model: a document either gets diagnostics or runs to a terminal status; never an internal
error, never a hang (pytest-timeout ends a hang; nothing here times anything).

Documents are built from a small grammar of the real step kinds with hostile pieces mixed
in: templates that loop for ever or build huge values, conditions that fail, for_each over
things that are not lists or far too long, paths that escape the workspace, nesting,
retries and timeouts. Shell steps run with shell disabled (LLMFLOW_DISABLE_SHELL=1).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmflow.errors import FlowValidationError
from llmflow.model.limits import Limits, using
from llmflow.model.loader import LoadedFlow
from llmflow.model.validate import validate_document
from llmflow.runtime import build_runtime

pytestmark = pytest.mark.timeout(240)

TEMPLATES = [
    "Say hi",
    "{{ inputs.text }}",
    "{{ inputs.text | upper }} {{ inputs.n * 2 }}",
    "{{ steps | tojson }}",
    "{{ nope.nothing }}",
    "{{ inputs.text[0] }}{{ inputs.text[99] }}",
    "{% for a in range(9999) %}{% for b in range(9999) %}{{ a }}{% endfor %}{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{{ range(100000) | list | length }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ 1 / 0 }}",
    "{{ item }} {{ matrix }}",
    "é 🚀 \u202e \ufeff",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
]
CONDITIONS = [
    "true",
    "false",
    "inputs.n > 1",
    "steps.a.output",
    "1 / 0",
    "nope",
    "{{ range(100000) | list }}",
    "inputs.text == 'go'",
]
FOR_EACH = [
    "{{ range(3) | list }}",
    "[1, 2]",
    "{{ inputs.n }}",
    "{{ range(100000) | list }}",
    "{{ inputs.items }}",
    "{{ {'a': 1} }}",
]
PATHS = [
    "out.txt",
    "a/b/c.md",
    "../escape.txt",
    "/etc/passwd",
    ".hidden",
    "{{ inputs.text }}.txt",
    "",
    "sub/../../x",
]


def _ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"s{n}"


@st.composite
def step(draw: Any, ids: Iterator[str], depth: int) -> dict[str, Any]:
    kinds = ["llm", "llm", "write_file", "shell", "broadcast"] + (["parallel", "loop"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    sid = next(ids)
    s: dict[str, Any] = {"id": sid}
    if kind == "llm":
        s["llm"] = {"prompt": draw(st.sampled_from(TEMPLATES))}
    elif kind == "write_file":
        s["write_file"] = {"path": draw(st.sampled_from(PATHS)), "content": draw(st.sampled_from(TEMPLATES))}
    elif kind == "shell":
        s["shell"] = "echo {{ inputs.text }}"
    elif kind == "broadcast":
        s["broadcast"] = {
            "agents": ["critic", "judge"],
            "prompt": draw(st.sampled_from(TEMPLATES)),
            "aggregate": draw(st.sampled_from(["all", "majority", "first"])),
        }
    elif kind == "parallel":
        s["parallel"] = draw(st.lists(step(ids, depth + 1), min_size=1, max_size=3))
    else:
        s["loop"] = {
            "steps": draw(st.lists(step(ids, depth + 1), min_size=1, max_size=2)),
            "until": draw(st.sampled_from(CONDITIONS)),
            "max_iterations": draw(st.integers(1, 3)),
        }
    if draw(st.booleans()) and kind in ("llm", "write_file"):
        s["for_each"] = draw(st.sampled_from(FOR_EACH))
    if draw(st.integers(0, 4)) == 0:
        s["when"] = draw(st.sampled_from(CONDITIONS))
    if draw(st.integers(0, 4)) == 0:
        s["retry"] = {"attempts": draw(st.integers(1, 2)), "backoff": 0}
    if draw(st.integers(0, 5)) == 0:
        s["on_error"] = "continue"
    if draw(st.integers(0, 6)) == 0:
        s["timeout"] = 5
    return s


@st.composite
def flow_document(draw: Any) -> dict[str, Any]:
    ids = _ids()
    steps = draw(st.lists(step(ids, 1), min_size=1, max_size=5))
    return {
        "name": "fuzzed",
        "inputs": {
            "text": {"type": "string", "default": "go"},
            "n": {"type": "integer", "default": 2},
            "items": {"type": "array", "default": ["x", "y"]},
        },
        "agents": {"critic": {"model": "fake:"}, "judge": {"model": "fake:"}},
        "options": {
            "max_concurrency": draw(st.integers(1, 8)),
            "on_error": draw(st.sampled_from(["fail", "continue"])),
        },
        "steps": steps,
        "outputs": {"last": f"{{{{ steps.{steps[-1]['id']}.output }}}}"},
    }


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("fuzz-runs")
    env = {
        "LLMFLOW_HOME": str(home),
        "LLMFLOW_MODEL": "fake:",
        "LLMFLOW_BLOCK_REAL_MODELS": "1",
        "LLMFLOW_DISABLE_SHELL": "1",
        "LLMFLOW_TEMPLATE_TIMEOUT": "0.3",
    }
    rt = build_runtime(env=env, home=home)
    yield rt
    rt.close()


# a bug shows as a plain Python exception in a step's or the run's error
INTERNAL = re.compile(
    r"\b(KeyError|TypeError|AttributeError|IndexError|RecursionError|AssertionError|NameError|UnboundLocalError|RuntimeError)\b"
)


@given(doc=flow_document())
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_a_fuzzed_flow_validates_then_runs_to_a_terminal_status(runtime: Any, doc: dict[str, Any]) -> None:
    with using(Limits(template_seconds=0.3)):
        flow, diags = validate_document(doc)
    if flow is None:
        assert diags and all(d.message and d.code for d in diags)
        event(f"invalid: {diags[0].code}")
        return
    try:
        st_ = asyncio.run(runtime.run(LoadedFlow(flow, None, "<fuzz>"), {}))
    except FlowValidationError as exc:  # inputs: the defaults above are valid, so this is a bug
        pytest.fail(f"valid flow refused at run time: {exc}")
    view = runtime.view(st_.run_id)
    event(f"ran: {view['status']}")
    assert view["status"] in ("COMPLETED", "FAILED"), view["status"]
    errors = (
        [view["error"] or ""]
        + [s["error"] or "" for s in view["steps"]]
        + [a["error"] or "" for s in view["steps"] for a in s["attempts"]]
    )
    assert not [e for e in errors if INTERNAL.search(e)], errors
    if view["status"] == "FAILED":
        assert view["error"], "a failed run says why"
    ws = Path(view["workspace"]).resolve()
    assert not (ws.parent / "escape.txt").exists()
