"""Broadcast aggregation strategies. Pure functions over the agents' answers.

- all: every successful answer, as a mapping agent -> answer
- first: the first answer that arrived
- majority: the most common normalised answer (ties: earliest)
- consensus: an answer shared by at least ``threshold`` of the responses; otherwise the
  fallback (majority | first | fail)
- weighted: answer with the highest summed agent weight
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmflow.errors import AggregationError  # in the error tree; still importable from here

__all__ = ["AggregationError", "Response", "aggregate"]


@dataclass(frozen=True)
class Response:
    agent: str
    output: Any
    order: int  # arrival order


def normalise(v: Any) -> str:
    if isinstance(v, str):
        return " ".join(v.strip().lower().split()).rstrip(".!")
    return json.dumps(v, sort_keys=True, default=str)


def aggregate(
    strategy: str,
    responses: list[Response],
    *,
    weights: dict[str, float] | None = None,
    threshold: float = 0.66,
    fallback: str = "majority",
    min_responses: int | None = None,
    total_agents: int | None = None,
) -> dict[str, Any]:
    """Returns {"output": ..., "strategy": ..., "votes": {...}, "agreement": float}."""
    if min_responses is not None and len(responses) < min_responses:
        raise AggregationError(f"only {len(responses)} of the required {min_responses} responses arrived")
    if not responses:
        raise AggregationError("no agent answered")
    by_order = sorted(responses, key=lambda r: r.order)
    if strategy == "all":
        return {
            "output": {r.agent: r.output for r in by_order},
            "strategy": "all",
            "responses": len(by_order),
        }
    if strategy == "first":
        r = by_order[0]
        return {"output": r.output, "strategy": "first", "agent": r.agent}
    votes: dict[str, float] = {}
    first_seen: dict[str, Response] = {}
    for r in by_order:
        key = normalise(r.output)
        w = (weights or {}).get(r.agent, 1.0) if strategy == "weighted" else 1.0
        votes[key] = votes.get(key, 0.0) + w
        first_seen.setdefault(key, r)
    best = max(votes, key=lambda k: (votes[k], -first_seen[k].order))
    total = sum(votes.values())
    agreement = votes[best] / total if total else 0.0
    result = {
        "output": first_seen[best].output,
        "strategy": strategy,
        "votes": {first_seen[k].agent + ":" + k[:40]: v for k, v in votes.items()},
        "agreement": round(agreement, 4),
    }
    if strategy in ("majority", "weighted"):
        return result
    if strategy == "consensus":
        if agreement >= threshold and len(responses) > 1 or len(responses) == 1 == (total_agents or 1):
            return result | {"consensus": True}
        if fallback == "fail":
            raise AggregationError(f"no consensus: best agreement {agreement:.0%} is below {threshold:.0%}")
        if fallback == "first":
            r = by_order[0]
            return {
                "output": r.output,
                "strategy": "consensus",
                "consensus": False,
                "fallback": "first",
                "agreement": round(agreement, 4),
            }
        return result | {"consensus": False, "fallback": "majority"}
    raise AggregationError(f"unknown aggregation {strategy!r}")
