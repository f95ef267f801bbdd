"""The one event follower (runtime/follow.py): every event once, in order, replay and live."""

from __future__ import annotations

import asyncio

from llmflow.model.spec import Flow
from llmflow.runtime import Runtime
from llmflow.runtime.follow import EventFollower, EventHub, LogFollower

FLOW = Flow.model_validate(
    {
        "name": "two",
        "inputs": {"text": {"type": "string"}},
        "steps": [
            {"id": "a", "kind": "llm", "prompt": "{{ inputs.text }}", "model": "fake:"},
            {"id": "b", "kind": "llm", "prompt": "{{ steps.a.output }}", "model": "fake:"},
        ],
    }
)


def test_a_follower_started_before_the_run_sees_every_event_once_in_order(runtime: Runtime) -> None:
    rec = runtime.create_run(FLOW, {"text": "hi"}, claim=True)
    hub = EventHub()

    async def main() -> list[int]:
        follower = EventFollower(runtime.store, hub, rec.id, poll_interval=0.05)
        seen: list[int] = []

        async def read() -> None:
            async for e in follower.events():
                seen.append(e.seq)

        reader = asyncio.create_task(read())
        await runtime.execute(rec.id, subscribers=[hub.publish])
        await asyncio.wait_for(reader, 10)
        return seen

    seen = asyncio.run(main())
    stored = [e.seq for e in runtime.store.events(rec.id)]
    assert seen == stored and len(stored) > 4
    assert runtime.store.events(rec.id)[-1].type == "RUN_COMPLETED"


def test_the_blocking_follower_replays_a_finished_run_in_pages_and_stops(runtime: Runtime) -> None:
    st = asyncio.run(runtime.run(FLOW, {"text": "hi"}))
    stored = runtime.store.events(st.run_id)
    follower = EventFollower(runtime.store, None, st.run_id, batch=2)
    assert [e.seq for e in follower.follow_blocking()] == [e.seq for e in stored]
    assert follower.finished()


def test_following_from_past_the_end_of_a_finished_run_ends_at_once(runtime: Runtime) -> None:
    st = asyncio.run(runtime.run(FLOW, {"text": "hi"}))
    last = runtime.store.events(st.run_id)[-1].seq
    follower = EventFollower(runtime.store, None, st.run_id, after_seq=last)
    assert list(follower.follow_blocking()) == []
    assert follower.finished()


def test_a_follower_of_a_run_still_queued_is_not_finished(runtime: Runtime) -> None:
    rec = runtime.create_run(FLOW, {"text": "hi"})
    follower = EventFollower(runtime.store, None, rec.id)
    assert [e.type for e in follower.follow_blocking(follow=False)] == ["RUN_CREATED"]
    assert not follower.finished()


def test_the_log_follower_moves_its_cursor_over_every_run(runtime: Runtime) -> None:
    one = asyncio.run(runtime.run(FLOW, {"text": "one"}))
    two = asyncio.run(runtime.run(FLOW, {"text": "two"}))
    follower = LogFollower(runtime.store, None, 0, batch=3)
    seen = []
    while page := follower.read():
        seen += page
    assert {e.run_id for e in seen} == {one.run_id, two.run_id}
    assert [e.id for e in seen] == sorted(e.id for e in seen) and follower.cursor == seen[-1].id
