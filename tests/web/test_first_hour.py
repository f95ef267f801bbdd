"""The first hour in the web console (headless Chromium against a real server): a model
that cannot work is refused at the form, human prompts use button wording, batches are
resumed and retried from their page, and the runs dashboard groups a batch's runs."""

from __future__ import annotations

import os
import re
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


def test_a_conductor_confirmation_reads_as_buttons_not_terminal_keys(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("panel", {"topic": "tabs or spaces"})
    page.goto(f"{server.url}/#/runs/{run_id}")
    expect(page.get_by_role("heading", name="Your input is needed")).to_be_visible()
    expect(page.locator(".human-request .prompt")).to_have_text("Next: optimist. Proceed?")
    expect(page.locator(".human")).not_to_contain_text("Enter")
    expect(page.get_by_role("button", name="Confirm")).to_be_visible()
    page.get_by_role("button", name="Reject").click()
    expect(page.locator(".page-head .badge")).to_have_text("completed")
