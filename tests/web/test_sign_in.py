"""The console on a server with LLMFLOW_API_TOKEN: the page loads without the token, asks
for it, keeps it for the tab, and sends it with every request and stream."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import ConsoleServer, make_home

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright is not installed: pip install 'llmflow[dev]'", allow_module_level=True)

pytestmark = pytest.mark.slow

TOKEN = "s3cret-console-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with ConsoleServer(make_home(tmp_path_factory.mktemp("home")), LLMFLOW_API_TOKEN=TOKEN) as s:
        yield s


def test_token_sign_in(page: Any, server: ConsoleServer) -> None:
    run_id = server.start_run("note", {"topic": "secret"})
    server.wait_for(run_id)
    page.goto(f"{server.url}/")
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog).to_be_visible()
    page.get_by_label("API token").fill("wrong")
    dialog.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_have_text("The server refused this token.")
    page.get_by_label("API token").fill(TOKEN)
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
    # the live stream (SSE over fetch, with the header) is connected too
    expect(page.locator("#live-state")).to_have_text("live")
    assert page.evaluate("sessionStorage.getItem('llmflow.token')") == TOKEN
    # a run started now shows up live, and its page streams with the token
    other = server.start_run("note", {"topic": "later"})
    expect(page.locator(f'tr[data-run="{other}"] .badge')).to_have_text("completed")
    page.locator(f'tr[data-run="{other}"] a').first.click()
    expect(page.locator(".timeline")).to_contain_text("RUN_COMPLETED")
    # the token is kept for the tab: a reload needs no new sign-in
    page.reload()
    expect(page.locator(".run-id")).to_have_text(other)
    expect(dialog).to_be_hidden()
    # signing out forgets it
    page.get_by_role("button", name="Sign out").click()
    expect(dialog).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('llmflow.token')") is None
