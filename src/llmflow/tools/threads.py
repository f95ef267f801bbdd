"""Conversation threads: a run started with ``thread=NAME`` continues the earlier runs of
that thread, like ``llm -c`` or a LangGraph thread.

What an agent sees: before its own messages (after the system prompt), the exchanges it had
in the thread's earlier runs, oldest first: for every completed attempt of a step using that
agent (or, without an agent, of the step with the same id), the last user message it was
sent and its final answer. Runs created after this one are not included, so a resumed run
sees the same history.

Truncation rule: the history is bounded by a token budget (``LLMFLOW_THREAD_TOKENS``,
default 2000; a token is counted as 4 characters). Exchanges are taken newest first and
kept whole while they fit; the first that does not fit, and every older one, is left out.
A message is never cut in the middle.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmflow.engine.events import EventType as E
from llmflow.providers.base import ChatMessage

if TYPE_CHECKING:
    from llmflow.store.base import Store

DEFAULT_BUDGET = 2000  # without settings (the LLMFLOW_THREAD_TOKENS setting's default too)
THREAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def check_thread_name(name: str) -> str | None:
    """None when ``name`` is a valid thread name, else what is wrong with it."""
    if not THREAD_NAME.match(name or ""):
        return f"thread name {name!r} must be 1-128 letters, digits, '_', '-', '.', ':' and start with a letter or digit"
    return None


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Exchange:
    run_id: str
    step_id: str
    key: str  # agent name, or step id
    user: str
    assistant: str
    ts: float

    def tokens(self) -> int:
        return estimate_tokens(self.user) + estimate_tokens(self.assistant)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "agent": self.key,
            "user": self.user,
            "assistant": self.assistant,
            "ts": self.ts,
        }


def _step_keys(spec: dict[str, Any]) -> dict[str, str]:
    """step id -> agent name (or the id) for every step of a recorded flow document."""
    out: dict[str, str] = {}

    def walk(steps: Any) -> None:
        for s in steps or []:
            if not isinstance(s, dict) or not isinstance(s.get("id"), str):
                continue
            llm = s.get("llm")
            body = llm if isinstance(llm, dict) else s
            if s.get("kind") == "broadcast" or "broadcast" in s:
                out[s["id"]] = ""  # one unit per agent: the unit is the agent's name
            else:
                out[s["id"]] = str(body.get("agent") or s["id"])
            for k in ("steps", "parallel", "loop"):
                if isinstance(s.get(k), list):
                    walk(s[k])

    walk((spec.get("flow") or {}).get("steps"))
    return out


def run_exchanges(store: Store, run_id: str) -> list[Exchange]:
    """Every completed LLM exchange of one run, in order."""
    rec = store.get_run(run_id)
    if rec is None:
        return []
    keys = _step_keys(rec.spec or {})
    first_prompt: dict[tuple[str, str | None, int | None], str] = {}
    out: list[Exchange] = []
    for e in store.events(run_id):
        if e.step_id is None:
            continue
        k = (e.step_id, e.unit, e.attempt)
        if e.type == E.LLM_GENERATING and k not in first_prompt:
            users = [
                m.get("content", "")
                for m in (e.payload.get("messages") or [])
                if isinstance(m, dict) and m.get("role") == "user"
            ]
            if users:
                first_prompt[k] = str(users[-1])
        elif e.type == E.ATTEMPT_COMPLETED and k in first_prompt:
            output = e.payload.get("output")
            text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
            short = e.step_id.rsplit("/", 1)[-1]
            key = keys.get(short, short) or (e.unit or short)
            out.append(Exchange(run_id, e.step_id, key, first_prompt[k], text, e.ts))
    return out


def history(
    store: Store, thread: str, key: str, *, before_run: str, budget: int = DEFAULT_BUDGET
) -> list[Exchange]:
    """The exchanges of agent/step ``key`` in the thread's runs created before ``before_run``,
    oldest first, cut to ``budget`` tokens by the rule in the module docstring."""
    runs = store.thread_runs(thread)
    ids = [r[0] for r in runs]
    if before_run in ids:
        runs = runs[: ids.index(before_run)]
    kept: list[Exchange] = []
    used = 0
    for run_id, _, _ in reversed(runs):
        for ex in reversed(run_exchanges(store, run_id)):
            if ex.key != key:
                continue
            if used + ex.tokens() > budget:
                return list(reversed(kept))
            kept.append(ex)
            used += ex.tokens()
    return list(reversed(kept))


def with_history(ctx: Any, messages: list[Any], thread: str, *, key: str) -> list[Any]:
    """``messages`` with the thread's earlier exchanges for ``key`` after the system prompt."""
    from llmflow.tools.services import services_of

    svc = services_of(ctx)
    if svc.store is None or not hasattr(svc.store, "thread_runs"):
        return messages
    past = history(svc.store, thread, key, before_run=ctx.run_id, budget=svc.thread_tokens)
    if not past:
        return messages
    chat = [m if isinstance(m, ChatMessage) else ChatMessage(m[0], m[1]) for m in messages]
    n_system = 0
    while n_system < len(chat) and chat[n_system].role == "system":
        n_system += 1
    prior = [m for ex in past for m in (ChatMessage("user", ex.user), ChatMessage("assistant", ex.assistant))]
    return chat[:n_system] + prior + chat[n_system:]


def thread_view(store: Store, name: str) -> dict[str, Any]:
    """A thread for the CLI and the API: its runs and every exchange, oldest first."""
    runs = store.thread_runs(name)
    return {
        "name": name,
        "runs": [{"id": r[0], "created_at": r[1], "status": r[2]} for r in runs],
        "messages": [ex.to_dict() for r in runs for ex in run_exchanges(store, r[0])],
    }
