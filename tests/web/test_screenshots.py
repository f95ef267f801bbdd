"""Screenshots of the console's main pages (1280x800, and one phone), taken from a server
with a few runs in every state. They land in test-artifacts/web/docs/; with
LLMFLOW_UPDATE_SCREENSHOTS=1 they also replace docs/img/console-*.png (the pictures of
docs/web-console.md; compress them with `pngquant --skip-if-larger --ext .png --force`)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import ARTIFACTS, ROOT, ConsoleServer, make_home

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed: pip install 'llmflow[dev]'", allow_module_level=True)

pytestmark = pytest.mark.slow

SHOTS = ARTIFACTS / "docs"
DOC_IMG = ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with ConsoleServer(make_home(tmp_path_factory.mktemp("home"))) as s:
        yield s


@pytest.fixture(scope="module")
def runs(server: ConsoleServer) -> dict[str, str]:
    """A history: finished runs of several flows, one re-run, one canceled, one waiting for a
    person, one still running."""
    out: dict[str, str] = {}
    out["review"] = server.start_run(
        "review",
        {"text": "The council approved the new **cycle lanes** on Tuesday, after a year of consultation."},
    )
    out["router"] = server.start_run(
        "support-router", {"message": "I was charged twice for my subscription this month."}
    )
    out["note"] = server.start_run(
        "note", {"topic": "tea", "words": 60}, models="fake:writer", name="tea note"
    )
    for k in ("review", "router", "note"):
        server.wait_for(out[k])
    with server.client() as c:
        r = c.post(f"/api/v1/runs/{out['note']}/rerun", json={"step": "outline", "downstream": True})
        assert r.status_code == 200, r.text
    server.wait_for(out["note"])
    out["canceled"] = server.start_run("slow", {"text": "stop me"}, models="fake:?latency=30")
    out["ask"] = server.start_run("ask", {"topic": "green tea"})
    out["running"] = server.start_run("slow", {"text": "take your time"}, models="fake:?latency=600")
    server.wait_for(out["canceled"], ("RUNNING",))
    with server.client() as c:
        c.post(f"/api/v1/runs/{out['canceled']}/cancel")
    server.wait_for(out["canceled"])
    server.wait_for(out["running"], ("RUNNING",))
    yield out
    with server.client() as c:
        for k in ("running", "ask"):
            c.post(f"/api/v1/runs/{out[k]}/cancel")


def shot(page: Any, name: str, *, full: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.evaluate("document.getElementById('toast').replaceChildren(); document.activeElement?.blur()")
    path = SHOTS / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=full, animations="disabled", caret="hide")
    if os.environ.get("LLMFLOW_UPDATE_SCREENSHOTS"):
        DOC_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMG / path.name)


def test_screenshots_of_the_main_pages(page: Any, server: ConsoleServer, runs: dict[str, str]) -> None:
    base = server.url
    page.goto(f"{base}/#/runs")
    expect(page.locator(f'tr[data-run="{runs["running"]}"] .badge')).to_have_text("running")
    expect(page.locator(f'tr[data-run="{runs["ask"]}"] .badge')).to_have_text("running")
    shot(page, "runs")

    page.goto(f"{base}/#/runs/{runs['note']}?step=outline")
    expect(page.locator(".attempt")).to_have_count(2)
    expect(page.locator(".compare .diff")).to_be_visible()
    expect(page.locator(".gnode")).to_have_count(2)
    shot(page, "run")
    page.evaluate(
        "[...document.querySelectorAll('.step-detail h3')].find(e => e.textContent.startsWith('Attempts')).scrollIntoView({block: 'start'}); window.scrollBy(0, -70)"
    )
    shot(page, "attempts")

    page.goto(f"{base}/#/runs/{runs['review']}?step=critics")
    expect(page.locator(".timeline")).to_contain_text("RUN_COMPLETED")
    page.get_by_role("button", name=re.compile(r"^Preview reports")).click()
    expect(page.locator(".artifact-preview .md")).to_be_visible()
    page.evaluate("document.querySelector('#tl-h').scrollIntoView({block: 'start'}); window.scrollBy(0, -70)")
    shot(page, "timeline")

    page.goto(f"{base}/#/runs/{runs['ask']}")
    expect(page.get_by_role("heading", name="Your input is needed")).to_be_visible()
    shot(page, "human")

    page.goto(f"{base}/#/flows/review")
    expect(page.locator(".gnode")).to_have_count(4)
    page.get_by_label("text string").fill("The council approved the new cycle lanes on Tuesday.")
    shot(page, "flow")

    page.goto(f"{base}/#/flows")
    expect(page.locator(".flow-item.invalid")).to_be_visible()
    shot(page, "flows")

    page.goto(f"{base}/#/projects")
    page.get_by_label("Name").fill("docs-site")
    page.get_by_label("Directory").fill("docs-site")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("link", name="docs-site")).to_be_visible()
    page.get_by_label("Name").fill("")
    page.get_by_label("Directory").fill("")
    shot(page, "projects")

    page.goto(f"{base}/#/batches")
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    # not wait_for_function: its string predicate is eval'd, which the console's CSP forbids
    expect(page.locator("main")).not_to_contain_text("Loading")
    shot(page, "batches")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/#/runs/{runs['note']}")
    expect(page.locator(".run-id")).to_be_visible()
    expect(page.locator(".gnode")).to_have_count(2)
    shot(page, "phone-run")
    page.goto(f"{base}/#/runs")
    expect(page.locator("table.runs")).to_be_visible()
    shot(page, "phone-runs")


def test_screenshot_of_the_sign_in(browser: Any, tmp_path: Path) -> None:
    with ConsoleServer(make_home(tmp_path), LLMFLOW_API_TOKEN="t") as s:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        try:
            page.goto(f"{s.url}/")
            expect(page.get_by_role("dialog", name="Sign in")).to_be_visible()
            shot(page, "sign-in")
        finally:
            ctx.close()


def test_the_docs_show_every_page() -> None:
    doc = (ROOT / "docs" / "web-console.md").read_text(encoding="utf-8")
    for img in re.findall(r"\]\((img/[^)]+)\)", doc):
        assert (ROOT / "docs" / img).is_file(), f"docs/web-console.md shows {img}, which is missing"
    for name in (
        "runs",
        "run",
        "attempts",
        "timeline",
        "human",
        "flow",
        "flows",
        "projects",
        "phone-run",
        "sign-in",
    ):
        assert f"img/console-{name}.png" in doc, f"docs/web-console.md does not show console-{name}.png"
