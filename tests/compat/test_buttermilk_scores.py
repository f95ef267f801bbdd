"""Buttermilk's score routes on a real Uvicorn (issue 15, item 14): the scores of a record's
runs (``/api/flows/{flow}[/datasets/{dataset}]/records/{record_id}/scores``), the answers
that were scored (``.../responses``) and the score page (``/score/{flow}/{record_id}``),
from the evaluations llmflow stored (``POST /api/v1/evals``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.helpers import LiveServer, both_stores, write_flow

TOX = """\
name: tox
data:
  tox_train: {type: file, path: records.jsonl}
inputs:
  text: {type: string, default: x}
steps:
  - {id: a, llm: "Is it toxic? {{ inputs.text }}"}
"""
RECORDS = [{"id": "r1", "text": "you <b>fool</b>"}, {"id": "r2", "text": "hello"}]


def evaluate(c: Any, word: str) -> dict[str, Any]:
    r = c.post(
        "/api/v1/evals",
        json={
            "flow": "tox",
            "records": RECORDS,
            "metrics": [{"type": "contains", "value": word}],
            "wait": True,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


@both_stores
def test_score_routes_answer_with_the_evaluations_agent_traces(make_app: Any, home: Path) -> None:
    write_flow(home, "tox", TOX)
    with LiveServer(make_app()) as srv, srv.client() as c:
        assert c.get("/api/flows/tox/records/r1/scores").json() == {"record_id": "r1", "agent_traces": []}
        good, bad = evaluate(c, "toxic"), evaluate(c, "nope")
        got = c.get("/api/flows/tox/records/r1/scores").json()
        assert got["record_id"] == "r1" and len(got["agent_traces"]) == 2
        first, second = got["agent_traces"]
        assert [first["session_id"], second["session_id"]] == [good["id"], bad["id"]]
        assert first["outputs"]["passed"] is True and first["outputs"]["score"] == 1.0
        assert second["outputs"]["passed"] is False and second["outputs"]["score"] == 0.0
        assert first["agent_info"]["role"] == "scorer" and first["inputs"] == {"record_id": "r1"}
        run_id = first["run_info"]["run_id"]
        assert c.get(f"/api/v1/runs/{run_id}").json()["batch_id"] == good["id"]
        # ?session_id= narrows to one evaluation, or one run
        for scope, evals in ((bad["id"], [bad["id"]]), (run_id, [good["id"]]), ("nosuch", [])):
            traces = c.get("/api/flows/tox/records/r1/scores", params={"session_id": scope}).json()[
                "agent_traces"
            ]
            assert [t["session_id"] for t in traces] == evals
        # the dataset form, and the answers that were scored
        assert c.get("/api/flows/tox/datasets/tox_train/records/r1/scores").json() == got
        answers = c.get("/api/flows/tox/records/r1/responses").json()["agent_traces"]
        assert [a["run_info"] for a in answers] == [t["run_info"] for t in got["agent_traces"]]
        assert all(
            a["outputs"]["response"].startswith("fake answer to: Is it toxic? you <b>fool</b>")
            for a in answers
        )
        # the score page: HTML, one row per score
        page = c.get("/score/tox/r1")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.text.count("<tr><td>") == 2 and f"<td>{bad['id']}</td>" in page.text
        assert "<td>pass</td>" in page.text and "<td>fail</td>" in page.text
        in_set = c.get("/score/tox/tox_train/r1").text
        assert in_set == page.text.replace("tox / r1", "tox / tox_train / r1")
        # Buttermilk's checks: 422 for an unknown flow or record id "undefined"; an unknown dataset is 404
        r = c.get("/api/flows/nope/records/r1/scores")
        assert r.status_code == 422 and r.json()["detail"].startswith("Invalid flow: nope")
        assert c.get("/api/flows/tox/records/undefined/scores").json() == {
            "detail": "Invalid record_id parameter"
        }
        assert c.get("/api/flows/tox/datasets/nope/records/r1/scores").status_code == 404
