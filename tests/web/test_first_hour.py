"""The first hour in the web console (headless Chromium against a real server): a model
that cannot work is refused at the form, human prompts use button wording, batches are
resumed and retried from their page, and the runs dashboard groups a batch's runs."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from tests.support import wait_until

from .helpers import ConsoleServer

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or, in CI, fail) with the reason
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed: pip install 'llmflow[dev]'", allow_module_level=True)

pytestmark = pytest.mark.slow


def test_a_model_that_cannot_work_is_refused_at_the_form(page: Any, server: ConsoleServer) -> None:
    with server.client() as c:
        before = c.get("/api/v1/runs", params={"flow": "note"}).json()["total"]
    page.goto(f"{server.url}/#/flows/note")
    page.get_by_label("topic string").fill("tea")
    page.get_by_label("words integer").fill("40")
    page.get_by_text("Options: models, project, name, timeout").click()
    box = page.get_by_label("Model for every step")
    box.fill("opnai:gpt-4o")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator(".run-form .notice")).to_contain_text("unknown provider 'opnai'")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).to_have_attribute("title", re.compile("did you mean 'openai'"))
    with server.client() as c:
        assert c.get("/api/v1/runs", params={"flow": "note"}).json()["total"] == before  # nothing recorded


def test_a_conductor_confirmation_reads_as_buttons_not_terminal_keys(
    page: Any, server: ConsoleServer
) -> None:
    run_id = server.start_run("panel", {"topic": "tabs or spaces"})
    page.goto(f"{server.url}/#/runs/{run_id}")
    expect(page.get_by_role("heading", name="Your input is needed")).to_be_visible()
    expect(page.locator(".human-request .prompt")).to_have_text("Next: optimist. Proceed?")
    expect(page.locator(".human")).not_to_contain_text("Enter")
    expect(page.get_by_role("button", name="Confirm")).to_be_visible()
    page.get_by_role("button", name="Reject").click()
    expect(page.locator(".page-head .badge")).to_have_text("completed")


GATED = """\
name: gated
inputs:
  text: {type: string}
steps:
  - id: gate
    shell: {command: "test -f FLAG"}
    retry: 1
  - id: say
    llm: "{{ inputs.text }}"
"""


def _gated_batch(server: ConsoleServer, tmp_path: Any, *extra: str) -> tuple[str, Any]:
    import json as _json

    flag = tmp_path / "ok.flag"
    (tmp_path / "gated.yaml").write_text(GATED.replace("FLAG", str(flag)))
    (tmp_path / "data.jsonl").write_text(
        "".join(_json.dumps({"text": f"record {i}"}) + "\n" for i in range(3))
    )
    p = server.cli(
        "batch",
        str(tmp_path / "gated.yaml"),
        "--data",
        str(tmp_path / "data.jsonl"),
        "-j",
        "1",
        "--json",
        *extra,
    )
    assert p.returncode == 1, p.stderr
    return _json.loads(p.stdout)["batch_id"], flag


def test_resume_and_retry_failed_buttons_finish_a_batch(
    page: Any, server: ConsoleServer, tmp_path: Any
) -> None:
    batch_id, flag = _gated_batch(server, tmp_path, "--error-policy", "stop")  # stops after the first failure
    page.goto(f"{server.url}/#/batches/{batch_id}")
    facts = page.locator(".card .facts").first
    expect(facts).to_contain_text("Failed")
    expect(page.locator(".progress-wrap")).to_contain_text("1 of 3")
    flag.write_text("ok")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".progress-wrap")).to_contain_text("3 of 3")  # the two that never ran
    with server.client() as c:
        b = c.get(f"/api/v1/batches/{batch_id}").json()
        assert (b["completed"], b["failed"]) == (2, 1)
    expect(page.locator("#failed-h + *")).to_contain_text("exit")  # the failed job, with its error
    page.get_by_role("button", name="Retry failed").click()
    expect(facts.locator("dt:text-is('Completed') + dd")).to_have_text("3")
    expect(facts.locator("dt:text-is('Failed') + dd")).to_have_text("0")
    expect(facts.locator(".badge")).to_have_text("completed")
    expect(page.locator("#failed-h + *")).to_contain_text("No failed jobs.")
    with server.client() as c:
        b = c.get(f"/api/v1/batches/{batch_id}").json()
        assert (b["status"], b["completed"], b["failed"]) == ("COMPLETED", 3, 0)


def test_the_dashboard_groups_a_batchs_runs_under_the_batch(
    page: Any, server: ConsoleServer, tmp_path: Any
) -> None:
    batch_id, _ = _gated_batch(server, tmp_path)
    solo = server.start_run("note", {"topic": "solo"}, models="fake:writer?latency=0.01&answer=" + "x" * 10)
    server.wait_for(solo)
    with server.client() as c:
        batch_runs = [r["id"] for r in c.get("/api/v1/runs", params={"batch_id": batch_id}).json()["runs"]]
    page.goto(f"{server.url}/#/runs")
    group = page.locator(f'tbody.batch-group[data-batch="{batch_id}"]')
    expect(group.locator("tr.group-row")).to_contain_text("3 of 3 done, 3 failed")
    expect(page.locator(f'tr[data-run="{solo}"]')).to_be_visible()
    for rid in batch_runs:  # not listed one by one
        expect(page.locator(f'tr[data-run="{rid}"]')).to_have_count(0)
    group.get_by_role("button", name=f"Show the runs of batch {batch_id}").click()
    expect(group.locator("tr.member")).to_have_count(3)
    # one line per row: no row is taller than its first row by more than a rounding error
    heights = page.locator("table.runs tbody tr").evaluate_all(
        "rows => rows.map(r => r.getBoundingClientRect().height)"
    )
    assert max(heights) < 1.5 * min(heights), heights


def test_long_model_strings_are_cut_with_the_full_text_on_hover(page: Any, server: ConsoleServer) -> None:
    model = "fake:writer?latency=0.01&chunk=3&answer=" + "long" * 20
    run_id = server.start_run("note", {"topic": "clip"}, models=model)
    server.wait_for(run_id)
    page.goto(f"{server.url}/#/runs/{run_id}")
    cell = page.locator('td[data-label="Model"] .clip').first
    expect(cell).to_have_attribute("title", model)
    # the steps table is redrawn as the run's last events arrive: ask the settled page
    # (not wait_for_function: its polled predicate is eval'd, which the console's CSP forbids)
    cut = "() => { const el = document.querySelector('td[data-label=\"Model\"] .clip'); return !!el && el.scrollWidth > el.clientWidth; }"
    wait_until(lambda: page.evaluate(cut), timeout=10, what="the model string cut, not wrapped")
