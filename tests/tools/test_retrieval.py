"""Retrieval: `llmflow index add` over text/Markdown/PDF/CSV/JSONL, BM25 + embeddings + hybrid
ranking, the `retrieve` step and the index tool; quality on the support example's corpus
(the expected document in the top 3 for every question)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmflow.engine.events import EventType as E
from llmflow.model.spec import Flow
from llmflow.runtime import build_runtime
from llmflow.tools.retrieval.ingest import add_paths
from llmflow.tools.retrieval.store import Index, IndexError_

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "support-agent" / "docs"
QUESTIONS = [
    json.loads(line)
    for line in (ROOT / "examples" / "support-agent" / "questions.jsonl").read_text().splitlines()
    if line.strip()
]


@pytest.fixture(scope="module")
def support_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("indexes")
    report = add_paths(d, "support", [str(CORPUS)], embed_model=None, env={})
    assert len(report.added) == 12 and not report.skipped
    return d


@pytest.mark.parametrize(
    "mode", ["hybrid", "vector"]
)  # BM25 alone misses paraphrases: bench/retrieval.py prints its recall
def test_the_expected_document_is_in_the_top_3(support_index, mode):
    idx = Index.open(support_index, "support")
    try:
        misses = []
        for q in QUESTIONS:
            hits = idx.search(q["question"], 3, mode)
            if q["expected"] not in [Path(h.source).name for h in hits]:
                misses.append((q["question"], [Path(h.source).name for h in hits]))
    finally:
        idx.close()
    assert misses == []


def test_hits_carry_source_chunk_title_and_score(support_index):
    idx = Index.open(support_index, "support")
    try:
        hit = idx.search("reset link valid for how long", 1)[0]
    finally:
        idx.close()
    d = hit.to_dict()
    assert (
        d["source"].endswith("password-reset.md")
        and d["chunk"] == 0
        and d["title"] == "Resetting your password"
    )
    assert "30 minutes" in d["text"] and d["score"] > 0 and d["bm25"] > 0 and 0 < d["similarity"] <= 1


def test_unchanged_files_are_skipped_and_changed_ones_replaced(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha launch code is red.\n")
    (docs / "b.txt").write_text("Bravo notes about blue things.\n")
    r = add_paths(tmp_path / "ix", "kb", [str(docs)], embed_model="none", env={})
    assert sorted(Path(s).name for s in r.added) == ["a.md", "b.txt"]
    r = add_paths(tmp_path / "ix", "kb", [str(docs)], embed_model=None, env={})
    assert len(r.unchanged) == 2 and not r.added
    (docs / "a.md").write_text("# Alpha\n\nThe alpha launch code is green now.\n")
    r = add_paths(tmp_path / "ix", "kb", [str(docs)], embed_model=None, env={})
    assert [Path(s).name for s in r.updated] == ["a.md"]
    idx = Index.open(tmp_path / "ix", "kb")
    try:
        assert idx.embed_model is None  # a BM25-only index answers every mode by BM25
        texts = [h.text for h in idx.search("alpha launch code", 5, "hybrid")]
        assert any("green" in t for t in texts) and not any("red" in t for t in texts)
        assert idx.stats()["documents"] == 2
    finally:
        idx.close()
    with pytest.raises(IndexError_, match="made with embedding model none"):
        add_paths(tmp_path / "ix", "kb", [str(docs)], embed_model="fake:", env={})


def test_csv_jsonl_and_pdf_are_ingested(tmp_path):
    (tmp_path / "faq.csv").write_text(
        "id,question,answer\n1,How to pay?,By card or invoice.\n2,Where is the office?,In Lisbon.\n"
    )
    (tmp_path / "tickets.jsonl").write_text(
        '{"id": 7, "subject": "Printer jam", "body": "Paper stuck in tray two"}\n\n{"id": 8, "subject": "VPN", "body": "Cannot connect from hotel"}\n'
    )
    pdf = tmp_path / "manual.pdf"
    _write_pdf(pdf, "The turbine must be serviced every 400 hours.")
    r = add_paths(
        tmp_path / "ix",
        "mixed",
        [str(tmp_path / "faq.csv"), str(tmp_path / "tickets.jsonl"), str(pdf)],
        embed_model="fake:",
        fields=None,
        env={},
    )
    assert len(r.added) == 3, r.skipped
    idx = Index.open(tmp_path / "ix", "mixed")
    try:
        assert (
            idx.search("office Lisbon", 1)[0].text
            == "id: 2\nquestion: Where is the office?\nanswer: In Lisbon."
        )
        assert "Paper stuck" in idx.search("printer paper jam", 1)[0].text
        top = idx.search("turbine service interval", 1)[0]
        assert top.source.endswith("manual.pdf") and top.title == "page 1" and "400 hours" in top.text
    finally:
        idx.close()
    r = add_paths(
        tmp_path / "ix",
        "fields",
        [str(tmp_path / "tickets.jsonl")],
        embed_model="none",
        fields=["subject"],
        env={},
    )
    idx = Index.open(tmp_path / "ix", "fields")
    try:
        assert [h.text for h in idx.search("VPN", 1)] == ["subject: VPN"]
    finally:
        idx.close()


def _write_pdf(path: Path, text: str) -> None:
    """A one-page PDF with ``text`` (hand-made: pypdf reads PDFs but does not lay out text)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode() + b"".join(
        f"{o:010d} 00000 n \n".encode() for o in offsets
    )
    out += f"trailer << /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def test_the_retrieve_step_and_the_index_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFLOW_INDEX_DIR", str(tmp_path / "ix"))
    add_paths(tmp_path / "ix", "support", [str(CORPUS)], embed_model="fake:", env={})
    scripts = {
        "agent": {
            "answers": [
                {"tool_calls": [{"name": "search_support", "arguments": {"query": "refund yearly plan"}}]},
                "{tool_results}",
            ]
        }
    }
    rt = build_runtime(home=tmp_path, fake_scripts=scripts)
    f = Flow.model_validate(
        {
            "name": "r",
            "model": "fake:agent",
            "inputs": {"q": {"type": "string"}},
            "steps": [
                {"id": "find", "kind": "retrieve", "index": "support", "query": "{{ inputs.q }}", "top_k": 2},
                {
                    "id": "answer",
                    "kind": "llm",
                    "prompt": "{{ steps.find.output | tojson }}",
                    "tools": [{"index": "support", "top_k": 1}],
                },
            ],
        }
    )
    st = asyncio.run(rt.run(f, {"q": "two-factor recovery codes"}))
    assert st.status == "COMPLETED", st.error
    hits = st.nodes["find"].output
    assert (
        len(hits) == 2
        and hits[0]["source"].endswith("two-factor.md")
        and {"source", "chunk", "score", "text"} <= set(hits[0])
    )
    tool_result = json.loads(st.nodes["answer"].output)
    assert len(tool_result) == 1 and tool_result[0]["source"].endswith("refunds.md")


def test_index_commands(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMFLOW_")}
    env.update(LLMFLOW_HOME=str(tmp_path), LLMFLOW_EMBED_MODEL="fake:")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmflow", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    p = run("index", "add", "kb", str(CORPUS))
    assert p.returncode == 0, p.stderr
    assert "12 added" in p.stdout
    p = run("index", "search", "kb", "keyboard shortcut for search", "--json")
    assert json.loads(p.stdout)[0]["source"].endswith("keyboard-shortcuts.md")
    assert "kb" in run("index", "list").stdout and "embeddings: fake:" in run("index", "list").stdout
    assert (tmp_path / ".llmflow" / "indexes" / "kb.db").exists()
    p = run("index", "add", "kb", "nowhere/")
    assert (
        p.returncode != 0
        and "no such file or directory: nowhere/" in p.stderr
        and "Traceback" not in p.stderr
    )
    p = run("index", "search", "missing", "x")
    assert p.returncode != 0 and "llmflow index add missing" in p.stderr
    assert (
        run("index", "remove", "kb").returncode == 0
        and not (tmp_path / ".llmflow" / "indexes" / "kb.db").exists()
    )


def test_a_missing_index_fails_the_step_with_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFLOW_INDEX_DIR", str(tmp_path / "ix"))
    rt = build_runtime(home=tmp_path)
    for step in (
        {"id": "find", "kind": "retrieve", "index": "nowhere", "query": "x"},
        {"id": "ask", "kind": "llm", "prompt": "x", "tools": [{"index": "nowhere"}]},
    ):
        st = asyncio.run(rt.run(Flow.model_validate({"name": "m", "model": "fake:", "steps": [step]})))
        assert st.status == "FAILED" and "'nowhere' does not exist" in st.error
        attempt = rt.view(st.run_id)["steps"][0]["attempts"]
        assert len(attempt) == 1  # not retried: running again cannot make the index
        failed = [e.payload for e in rt.store.events(st.run_id) if e.type == E.ATTEMPT_FAILED]
        assert [p["kind"] for p in failed] == ["validation"]  # StepConfigError
