"""A SuperOptiX orchestra file's run, read back in SuperOptiX's result shape (``success``,
``total_execution_time``, ``stats``, ``task_results``) plus ``run_id`` and ``workspace``.
:meth:`llmflow.sdk.orchestra.Orchestra.run_file` runs the file; this reads the run's view."""

from __future__ import annotations

from typing import Any

from llmflow.engine.states import RunStatus, StepStatus


def file_result(view: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The result of the run ``view`` shows; ``elapsed`` stands in for a duration the run
    did not record."""
    tasks = {s["id"]: s for s in view["steps"] if s["kind"] == "llm"}
    # as SuperOptiX: only tasks that ran are in task_results (a failed task's dependents
    # are absent, not listed as skipped)
    ran = {n: s for n, s in tasks.items() if s["status"] in (StepStatus.COMPLETED, StepStatus.FAILED)}
    results = {
        n: {
            "success": s["status"] == StepStatus.COMPLETED,
            "status": s["status"],
            "output": s["output"],
            "error": s["error"] or s["reason"],
            "execution_time": s["duration"],
        }
        for n, s in ran.items()
    }
    failed = sum(1 for r in results.values() if r["status"] == StepStatus.FAILED)
    return {
        "success": view["status"] == RunStatus.COMPLETED and failed == 0,
        "total_execution_time": view["duration"] if view["duration"] is not None else elapsed,
        "stats": {
            "start_time": view["started_at"],
            "end_time": view["ended_at"],
            "total_tasks": len(tasks),
            "completed_tasks": sum(1 for r in results.values() if r["success"]),
            "failed_tasks": failed,
            "skipped_tasks": len(tasks) - len(ran),
            "execution_times": {n: r["execution_time"] for n, r in results.items()},
        },
        "task_results": results,
        "run_id": view["id"],
        "workspace": view["workspace"],
    }
