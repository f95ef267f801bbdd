"""What a caller asks of one run (:class:`RunRequest`), and the ids runs get.

Not to be confused with :class:`llmflow.model.spec.RunOptions`, the ``options:`` block of a
flow definition: a request carries the choices of one run (models, limits, where it writes,
its place in a batch, a parent run or a thread) and is recorded with the run."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRequest:
    models: dict[str, str] = field(default_factory=dict)  # step id (or "*") -> provider:model
    timeout: float | None = None
    workspace: str | None = None
    max_concurrency: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    batch_id: str | None = None
    project_id: int | None = None
    parent_run_id: str | None = None
    name: str | None = None
    goal: str | None = None
    run_type: str = "flow"
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    thread: str | None = None  # continue this conversation thread (kept as metadata.thread)
    disallow_shell: bool | None = (
        None  # no shell / imported code, whatever the process allows (posted flows, their child runs)
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if v not in (None, {}, []) and k not in ("run_id", "thread")
        }

    @classmethod
    def from_recorded(cls, options: dict[str, Any]) -> RunRequest:
        """The request a run was created with, from its recorded options (a fork's default)."""
        return cls(**{k: v for k, v in options.items() if k in cls.__dataclass_fields__})


def new_run_id() -> str:
    # 48 random bits: thousands of runs a second must not collide (24 bits did, by birthday)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6)


def child_run_id(parent_id: str, node_id: str, unit: str) -> str:
    """Stable across processes (a content hash, never Python's salted ``hash()``): a resumed
    parent finds the child a previous process started."""
    base = f"{parent_id}.{node_id.replace('/', '.')}"
    if not unit:
        return base
    return f"{base}.{hashlib.blake2b(unit.encode(), digest_size=4).hexdigest()}"
