"""Retrieval quality and speed on the support example's corpus: recall@1 and recall@3 of
BM25, vector and hybrid search over the questions in examples/support-agent/questions.jsonl,
plus how long indexing and a query take (wall clock; a loaded machine makes these noisy).

    .venv/bin/python bench/retrieval.py [--embed-model local:all-minilm-l6-v2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support-agent"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embed-model", default=None, help="provider:model (default: the embedded model)")
    args = ap.parse_args()
    from llmflow.tools.retrieval.ingest import add_paths
    from llmflow.tools.retrieval.store import Index

    questions = [json.loads(x) for x in (EXAMPLE / "questions.jsonl").read_text().splitlines() if x.strip()]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        report = add_paths(Path(d), "support", [str(EXAMPLE / "docs")], embed_model=args.embed_model, env={})
        t_index = time.perf_counter() - t0
        idx = Index.open(Path(d), "support")
        print(
            f"corpus: {len(report.added)} documents, {report.chunks} chunks; embeddings: {idx.embed_model}; indexing took {t_index:.2f}s (model load included)"
        )
        print(f"{'mode':<8} {'recall@1':>9} {'recall@3':>9} {'ms/query':>9}")
        for mode in ("bm25", "vector", "hybrid"):
            at1 = at3 = 0
            t0 = time.perf_counter()
            for q in questions:
                names = [Path(h.source).name for h in idx.search(q["question"], 3, mode)]
                at1 += names[:1] == [q["expected"]]
                at3 += q["expected"] in names
            ms = (time.perf_counter() - t0) / len(questions) * 1000
            print(f"{mode:<8} {at1 / len(questions):>9.2f} {at3 / len(questions):>9.2f} {ms:>9.1f}")
        idx.close()
    print(f"({len(questions)} questions; the test suite asserts recall@3 = 1.00 for vector and hybrid)")


if __name__ == "__main__":
    main()
