"""What a batch looks like from outside: done / failed / running / remaining, tokens,
cost, rate and ETA, read from the store (``llmflow batches``; the API can serve the same)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmflow.store.base import Store

STALE_SECONDS = 30.0  # a driver silent this long is gone (other hosts)


def driver_alive(owner: str | None, heartbeat: float, now: float) -> bool:
    """Is the process ``host:pid:nonce`` still driving? Same host: its pid must exist and
    its heartbeat be fresh; another host: the heartbeat must be fresh."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if _zombie(int(pid)):  # killed, not yet reaped (containers without an init)
            return False
    return now - heartbeat < STALE_SECONDS


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def batch_view(store: Store, batch: Any, now: float) -> dict[str, Any]:
    s = store.batch_summary(batch.id)
    st = s["statuses"]
    completed = st.get("COMPLETED", 0)
    failed = st.get("FAILED", 0) + st.get("CANCELED", 0)
    running = st.get("RUNNING", 0)
    finished = completed + failed
    total = batch.total
    remaining = max(total - finished, 0) if total is not None else None
    status = batch.status
    if status == "RUNNING" and not driver_alive(batch.owner, batch.updated_at, now):
        status = "INTERRUPTED"  # its driver died: resume it
    if status != "RUNNING":
        running = 0
    start, end = s["first_started_at"], s["last_ended_at"]
    elapsed = ((now if status == "RUNNING" else end or now) - start) if start else None
    rate = finished / elapsed if elapsed and elapsed > 0 else None
    eta = remaining / rate if status == "RUNNING" and rate and remaining is not None else None
    spec = batch.spec or {}
    return {
        "id": batch.id,
        "flow": batch.flow_name,
        "status": status,
        "total": total,
        "done": finished,
        "completed": completed,
        "failed": failed,
        "running": running,
        "remaining": remaining,
        "tokens": {
            "input": s["tokens_in"],
            "output": s["tokens_out"],
            "total": s["tokens_in"] + s["tokens_out"],
        },
        "cost": round(s["cost"], 6),
        "rate": round(rate, 3) if rate is not None else None,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "created_at": batch.created_at,
        "updated_at": batch.updated_at,
        "ended_at": batch.ended_at,
        "owner": batch.owner,
        "reason": (batch.metadata or {}).get("reason"),
        "data": spec.get("data", {}).get("path") or spec.get("data", {}).get("format"),
        "output": spec.get("output"),
        "options": {
            k: spec.get(k)
            for k in (
                "columns",
                "record_id",
                "max_records",
                "shuffle",
                "seed",
                "error_policy",
                "max_workers",
                "engine",
                "overrides",
                "models",
            )
            if spec.get(k) not in (None, [], {})
        },
        "variants": spec.get("variants") or [],
    }
