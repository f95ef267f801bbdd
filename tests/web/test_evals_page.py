"""The console's evaluations page in headless Chromium: the list, one evaluation's
per-variant table and per-record scores linking to the runs, and the regressions between
two evaluations."""

from __future__ import annotations

from typing import Any

from .helpers import ARTIFACTS, ConsoleServer

RECORDS = [
    {"id": "q1", "prompt": "Why is the sky blue?", "expected": "answer"},
    {"id": "q2", "prompt": "Why is grass green?", "expected": "answer"},
]


def _eval(server: ConsoleServer, **body: Any) -> dict[str, Any]:
    with server.client() as c:
        r = c.post(
            "/api/v1/evals",
            json={"flow": "hello", "records": RECORDS, "metrics": ["contains"], "wait": True, **body},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return r.json()


def test_evaluations_list_detail_and_regressions(page: Any, server: ConsoleServer) -> None:
    from playwright.sync_api import expect

    base = _eval(server)
    bad = _eval(server, models={"*": "fake:?answer=no"})
    good = _eval(server, variants={"model": ["fake:", "fake:?answer=nothing useful"]})
    assert base["summary"]["overall"]["passed"] == 2 and bad["summary"]["overall"]["passed"] == 0

    page.goto(f"{server.url}/#/evals")
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()
    expect(page.locator("#evals-table")).to_contain_text(good["id"])
    expect(page.locator("#evals-table")).to_contain_text(bad["id"])
    expect(page.locator('nav [data-nav="evals"]')).to_have_attribute("aria-current", "page")

    # regressions between two evaluations: A = the baseline, B = the bad one
    page.get_by_label(f"baseline {base['id']}").check()
    page.get_by_label(f"candidate {bad['id']}").check()
    expect(page.locator("#compare-regressed")).to_contain_text("q1")
    expect(page.locator("#compare-regressed")).to_contain_text("q2")
    expect(page.get_by_role("heading", name="Regressions (2)")).to_be_visible()

    # one evaluation: the variants side by side, then every record's scores with its run
    page.get_by_role("link", name=good["id"]).first.click()
    expect(page.get_by_role("heading", name=f"Evaluation {good['id']}")).to_be_visible()
    expect(page.locator("#eval-passed")).to_contain_text("2/4 (50.0%)")
    variants = page.locator("#variants-table tbody tr")
    expect(variants).to_have_count(2)
    expect(page.locator("#variants-table")).to_contain_text("model=fake:")
    expect(page.locator("#variants-table thead")).to_contain_text("p95")
    expect(page.locator("#records-table tbody tr")).to_have_count(4)
    page.get_by_label("Which records").select_option("failed")
    expect(page.locator("#records-table tbody tr")).to_have_count(2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "evaluation-detail.png"), full_page=True)
    run_id = next(r["run_id"] for r in good["results"] if not r["passed"])
    page.locator(f'#records-table a[title="{run_id}"]').click()  # the record's run, one click away
    expect(page).to_have_url(f"{server.url}/#/runs/{run_id}")
    expect(page.locator("main")).to_contain_text("answer")
