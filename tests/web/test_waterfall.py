"""The run page's waterfall in headless Chromium (Debian's, through Playwright: the `page`
fixture of this directory) on a real server: a bar for each step, attempts and model calls
nested, parallel steps overlapping, a click selects the step; run controls follow the run's
state; Swagger UI and ReDoc render with every request off the host refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import ConsoleServer, make_home

PAR = """\
name: par
steps:
  - id: plan
    llm: "plan it"
  - id: left
    needs: [plan]
    llm: {prompt: "left of {{ steps.plan.output }}", model: "fake:?latency=0.6"}
  - id: right
    needs: [plan]
    llm: {prompt: "right of {{ steps.plan.output }}", model: "fake:?latency=0.6"}
  - id: join
    needs: [left, right]
    shell: "echo joined"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    home = make_home(tmp_path_factory.mktemp("home"))
    (home / "conf" / "flows" / "par.yaml").write_text(PAR)
    with ConsoleServer(home, LLMFLOW_ALLOW_SHELL="1") as s:
        yield s


def test_waterfall_bars_per_step_with_parallel_steps_overlapping(page: Any, server: ConsoleServer) -> None:
    from playwright.sync_api import expect

    rid = server.start_run("par")
    assert server.wait_for(rid) == "COMPLETED"
    page.goto(f"{server.url}/#/runs/{rid}")
    steps = page.locator("#waterfall .wf-bar.wf-step")
    expect(steps).to_have_count(4)
    bars = {
        b["step"]: b
        for b in steps.evaluate_all(
            "els => els.map(e => ({step: e.dataset.step, status: e.dataset.status, start: +e.dataset.start, end: +e.dataset.end, x: e.getBoundingClientRect().left, r: e.getBoundingClientRect().right}))"
        )
    }
    assert set(bars) == {"plan", "left", "right", "join"}
    assert {b["status"] for b in bars.values()} == {"completed"}
    left, right, plan, join = bars["left"], bars["right"], bars["plan"], bars["join"]
    # the two parallel steps overlap in time and on screen; plan before them, join after
    assert left["start"] < right["end"] and right["start"] < left["end"]
    assert left["x"] < right["r"] and right["x"] < left["r"]
    assert plan["end"] <= min(left["start"], right["start"]) and join["start"] >= max(
        left["end"], right["end"]
    )
    # attempts and model calls nested under their steps
    expect(page.locator('#waterfall .wf-bar.wf-attempt[data-step="left"]')).to_have_count(1)
    expect(page.locator('#waterfall .wf-bar.wf-llm[data-step="left"]')).to_have_count(1)
    expect(page.locator('#waterfall .wf-bar.wf-shell[data-step="join"]')).to_have_count(1)
    # click through to the step detail
    page.locator('#waterfall .wf-bar.wf-step[data-step="right"]').click()
    expect(page.locator(".detail-box h2").first).to_contain_text("right")
    expect(page.locator('#waterfall .wf-row.wf-selected[data-kind="step"]')).to_have_attribute(
        "data-step", "right"
    )
    # a finished run offers no Cancel / Pause
    expect(page.locator("#btn-cancel")).to_be_hidden()
    expect(page.locator("#btn-pause")).to_be_hidden()


def test_controls_follow_the_run_state(page: Any, server: ConsoleServer) -> None:
    from playwright.sync_api import expect

    rid = server.start_run("ask")  # waits for a person
    page.goto(f"{server.url}/#/runs/{rid}")
    expect(page.locator("#btn-cancel")).to_be_visible()
    expect(page.locator("#btn-pause")).to_be_visible()
    expect(page.locator("#btn-resume")).to_be_hidden()
    expect(page.locator("#waterfall .wf-bar.wf-human")).to_have_count(1)
    page.locator("#btn-cancel").click()
    expect(page.locator("#btn-cancel")).to_be_hidden()
    expect(page.locator("#btn-pause")).to_be_hidden()
    assert server.status(rid) == "CANCELED"


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock-summary"), ("/redoc", "[data-section-id]")])
def test_api_docs_render_with_the_network_cut_off(
    page: Any, server: ConsoleServer, path: str, ready: str
) -> None:
    """Swagger UI and ReDoc come from the package: with every request off this host
    refused, they still render the API's operations."""
    from playwright.sync_api import expect

    outside: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(server.url + path)
    expect(page.locator(ready).first).to_be_visible()
    assert page.locator(ready).count() > 20
    assert outside == []
