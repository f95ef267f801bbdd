"""The web console in headless Chromium against a real server: everything a user does in
the browser, with Playwright's auto-waiting expect (no sleeps, no timing assertions)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from .helpers import ConsoleServer

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or, in CI, fail) with the reason
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed: pip install 'llmflow[dev]'", allow_module_level=True)

pytestmark = pytest.mark.slow


def run_badge(page: Any) -> Any:
    return page.locator(".page-head .badge")


def open_run(page: Any, server: ConsoleServer, run_id: str) -> None:
    page.goto(f"{server.url}/#/runs/{run_id}")
    expect(page.locator(".run-id")).to_have_text(run_id)


def test_start_a_run_from_the_form_and_watch_it_complete_live(page: Any, server: ConsoleServer) -> None:
    page.goto(f"{server.url}/#/flows/note")
    expect(page.get_by_role("heading", name="Start a run")).to_be_visible()
    page.get_by_label("topic string").fill("tea")
    page.get_by_label("words integer").fill("40")
    page.get_by_text("Options: models, project, name, timeout").click()
    page.get_by_label("Model for every step").fill("fake:writer")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"#/runs/[\w.-]+$"))
    # the model's text streams into the timeline while the step runs, then the run completes
    expect(page.locator('.ev[data-type="STREAMING"] .stream-text').first).to_contain_text("Tea is brewed")
    expect(run_badge(page)).to_have_text("completed")
    expect(page.locator('.gnode[data-step="outline"]')).to_have_class(re.compile(r"\bst-completed\b"))
    expect(page.locator('.gnode[data-step="save"]')).to_have_class(re.compile(r"\bst-completed\b"))
    expect(page.locator(".timeline")).to_contain_text("RUN_COMPLETED")
    # the output is Markdown: rendered (heading, list, emphasis), the raw text a tab away
    outputs = page.locator(".io")
    expect(outputs.locator(".md h1").first).to_have_text("Tea")
    expect(outputs.locator(".md li").first).to_contain_text("green tea")
    expect(page.locator(".run-facts")).to_contain_text("every step: fake:writer")


def test_cancel_a_running_run(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("slow", models="fake:?latency=10")
    open_run(page, server, run_id)
    expect(run_badge(page)).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()
    expect(run_badge(page)).to_have_text("canceled")
    expect(page.locator(".timeline")).to_contain_text("RUN_CANCELED")
    expect(page.locator('.gnode[data-step="one"]')).to_have_class(re.compile(r"\bst-canceled\b"))
    # a finished run offers no controls (the API still refuses them: tests/server)
    for name in ("Cancel", "Pause", "Resume"):
        expect(
            page.get_by_role("group", name="Run controls").get_by_role("button", name=name, exact=True)
        ).to_be_hidden()


def test_pause_and_resume_a_run(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("slow", models="fake:?latency=3")
    open_run(page, server, run_id)
    expect(run_badge(page)).to_have_text("running")
    page.get_by_role("button", name="Pause").click()
    expect(run_badge(page)).to_have_text("paused")
    expect(page.locator(".timeline")).to_contain_text("RUN_PAUSED")
    expect(page.locator('.gnode[data-step="three"]')).not_to_have_class(re.compile(r"\bst-completed\b"))
    page.get_by_role("button", name="Resume").click()
    expect(run_badge(page)).to_have_text("completed")
    expect(page.locator('.gnode[data-step="three"]')).to_have_class(re.compile(r"\bst-completed\b"))


def test_answer_human_prompts(page: Any, server: ConsoleServer) -> None:
    page.goto(f"{server.url}/#/flows/ask")
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_role("heading", name="Your input is needed")).to_be_visible()
    expect(page.locator(".human-request .prompt")).to_have_text("Publish the draft?")
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".human-request .prompt")).to_have_text("Your name?")
    page.get_by_label("Your answer").fill("Ann")
    page.get_by_role("button", name="Send").click()
    expect(run_badge(page)).to_have_text("completed")
    expect(page.locator(".human")).to_be_hidden()
    outputs = page.locator(".io")
    expect(outputs).to_contain_text("Ann")
    expect(outputs.locator("dd").filter(has_text="true").first).to_be_visible()


def test_rerun_a_step_and_compare_both_attempts(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("note", {"topic": "oolong"}, models="fake:writer")
    server.wait_for(run_id)
    page.goto(f"{server.url}/#/runs/{run_id}?step=outline")
    expect(page.locator(".step-detail h2")).to_contain_text("outline")
    expect(page.locator(".attempt")).to_have_count(1)
    page.get_by_role("button", name="Re-run step", exact=True).click()
    expect(page.locator(".attempt")).to_have_count(2)
    expect(run_badge(page)).to_have_text("completed")
    expect(page.locator(".attempts.side-by-side .attempt").nth(1)).to_contain_text("completed")
    # the scripted model answers differently the second time: the diff shows it
    diff = page.locator(".compare .diff")
    expect(diff.locator("figcaption")).to_contain_text("#1 → #2")
    expect(diff.locator(".add").first).to_be_visible()
    expect(page.locator('.gnode[data-step="outline"] .node-meta')).to_contain_text("×2")
    # the step after it went stale (re-run without downstream)
    expect(page.locator('.gnode[data-step="save"]')).to_have_class(re.compile(r"\bst-stale\b"))


def test_open_and_download_an_artifact(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("note", {"topic": "sencha"}, models="fake:writer")
    server.wait_for(run_id)
    open_run(page, server, run_id)
    row = page.locator("table.artifacts tr", has_text="notes/sencha.md")
    expect(row).to_be_visible()
    row.get_by_role("button", name="Preview notes/sencha.md").click()
    preview = page.locator(".artifact-preview")
    expect(preview.locator("h3")).to_have_text("notes/sencha.md")
    expect(preview.locator(".md h1")).to_have_text("Tea")
    with page.expect_download() as dl:
        row.get_by_role("button", name="Download notes/sencha.md").click()
    download = dl.value
    assert download.suggested_filename == "sencha.md"
    assert "Camellia sinensis" in Path(download.path()).read_text(encoding="utf-8")


def test_dashboard_shows_a_run_started_from_the_cli_without_reloading(
    page: Any, server: ConsoleServer
) -> None:
    page.goto(f"{server.url}/#/runs")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("window.__not_reloaded = true")
    p = server.cli("run", "note", "-i", "topic=matcha", "--json")
    assert p.returncode == 0, p.stderr
    run_id = json.loads(p.stdout)["id"]
    row = page.locator(f'tr[data-run="{run_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row).to_contain_text("note")
    assert page.evaluate("window.__not_reloaded") is True


def test_dashboard_filters_and_search(page: Any, server: ConsoleServer) -> None:
    a = server.start_run("note", {"topic": "filters"})
    server.wait_for(a)
    page.goto(f"{server.url}/#/runs")
    page.get_by_label("Flow", exact=True).select_option("note")
    expect(page).to_have_url(re.compile(r"flow=note"))
    expect(page.locator(".runs-area > p.muted")).to_contain_text("(flow note)")
    for cell in page.locator("table.runs tbody td[data-label=Flow]").all():
        expect(cell).to_have_text("note")
    page.get_by_label("Search by id").fill(a)
    page.get_by_label("Search by id").press("Enter")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{a}"]')).to_be_visible()


def test_flows_list_and_a_flows_page(page: Any, server: ConsoleServer) -> None:
    page.goto(f"{server.url}/#/flows")
    review = page.locator(".flow-item", has_text="review")
    expect(review).to_contain_text("Classify an article")
    broken = page.locator(".flow-item", has=page.get_by_role("link", name="broken", exact=True))
    expect(broken.locator(".badge")).to_have_text("invalid")
    expect(broken.locator(".diag")).to_contain_text("broken.yaml:5:")
    page.get_by_role("link", name="support-router").click()
    expect(page.locator(".gnode")).to_have_count(6)
    expect(page.locator(".edge-label").first).to_have_text("route")
    expect(page.locator("table").first).to_contain_text("message")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".notice.ok")).to_contain_text("support-router is valid")
    page.goto(f"{server.url}/#/flows/broken")
    expect(page.get_by_role("heading", name="This flow is invalid")).to_be_visible()
    expect(page.locator(".diagnostics")).to_contain_text("broken.yaml:5:")
    expect(page.locator(".diagnostics")).to_contain_text("did you mean 'prompt'?")


def test_projects_create_and_list_their_runs(page: Any, server: ConsoleServer) -> None:
    page.goto(f"{server.url}/#/projects")
    page.get_by_label("Name").fill("web-demo")
    page.get_by_label("Directory").fill("web-demo")
    page.get_by_role("button", name="Create project").click()
    link = page.get_by_role("link", name="web-demo")
    expect(link).to_be_visible()
    with server.client() as c:
        pid = next(p["id"] for p in c.get("/api/v1/projects").json()["projects"] if p["name"] == "web-demo")
    run_id = server.start_run("note", {"topic": "project"}, project_id=pid)
    link.click()
    expect(page.get_by_role("heading", name="Project web-demo")).to_be_visible()
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
    page.get_by_role("link", name="Projects", exact=True).first.click()
    page.get_by_label("Name").fill("web-demo")
    page.get_by_label("Directory").fill("elsewhere")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator(".project-form .notice.error")).to_contain_text("already exists")


def test_batches_page_degrades_or_shows_batches(page: Any, server: ConsoleServer) -> None:
    with server.client() as c:
        has_api = c.get("/api/v1/batches").status_code == 200
    page.goto(f"{server.url}/#/batches")
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    if has_api:
        expect(page.locator("#batches-missing")).to_have_count(0)
    else:
        expect(page.locator("#batches-missing")).to_contain_text("not available")


def test_phone_width_has_no_sideways_scrolling(browser: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("note", {"topic": "phone"}, models="fake:writer")
    server.wait_for(run_id)
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    try:
        for route, ready in (
            (f"#/runs/{run_id}", ".run-id"),
            ("#/runs", "table.runs"),
            ("#/flows/review", ".run-form"),
        ):
            page.goto(f"{server.url}/{route}")
            expect(page.locator(ready)).to_be_visible()
            expect(page.locator(".top nav")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{route} scrolls sideways by {overflow}px at phone width"
        # tables turn into labelled cards
        page.goto(f"{server.url}/#/runs")
        expect(page.locator("table.runs thead")).to_be_hidden()
        page.screenshot(path=str(_artifact("phone-runs.png")), full_page=True)
    finally:
        ctx.close()


def test_keyboard_only_use(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("note", {"topic": "keys"}, models="fake:writer")
    server.wait_for(run_id)
    open_run(page, server, run_id)
    node = page.locator('.gnode[data-step="outline"]')
    node.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".step-detail h2")).to_contain_text("outline")
    expect(node).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Escape")
    page.locator("body").focus()
    page.keyboard.press("g")
    page.keyboard.press("f")
    expect(page).to_have_url(re.compile(r"#/flows$"))
    page.keyboard.press("g")
    page.keyboard.press("r")
    # "/" focuses the runs page's search box once that page is drawn (a key pressed while the
    # route is still changing has no box to focus: seen once on CI's clone)
    expect(page).to_have_url(re.compile(r"#/runs$"))
    expect(page.get_by_label("Search by id")).to_be_visible()
    page.keyboard.press("/")
    expect(page.get_by_label("Search by id")).to_be_focused()


def test_markdown_is_escaped_and_links_are_safe(page: Any, server: ConsoleServer) -> None:
    page.goto(f"{server.url}/#/runs")
    expect(page.locator("#live-state")).to_have_text("live")
    build = server.app.state.console_build
    html = page.evaluate(
        """async (build) => {
          const md = await import(`/ui/${build}/js/markdown.js`);
          return md.markdownToHtml('<script>alert(1)</script>\\n\\n[x](javascript:alert(1)) [ok](https://e.org/a_b_) <img src=x onerror=alert(1)>\\n\\n**b** `<i>`');
        }""",
        build,
    )
    assert "<script" not in html and "<img" not in html and "<i>" not in html
    assert 'href="javascript' not in html
    assert '<a href="https://e.org/a_b_"' in html
    assert "<strong>b</strong>" in html and "<code>&lt;i&gt;</code>" in html
    diff = page.evaluate(
        """async (build) => (await import(`/ui/${build}/js/diff.js`)).diffLines('a\\nb\\nc', 'a\\nc\\nd').map(r => r.op + r.text).join('|')""",
        build,
    )
    assert diff == " a|-b| c|+d"


def _artifact(name: str) -> Any:
    from .helpers import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
