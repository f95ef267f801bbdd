"""Loop bodies are scoped node ids ("outer#1/inner#2/step"): the engine must read them in
that scope. Both cases were found by the fuzz suite (tests/fuzz/test_flow_documents.py)."""

from __future__ import annotations

import asyncio

from llmflow.model.loader import parse_flow_text


def test_a_parallel_group_inside_a_loop_completes_with_its_childrens_outputs(runtime):
    flow = parse_flow_text(
        """
name: p_in_loop
steps:
  - id: rounds
    loop:
      until: "false"
      max_iterations: 2
      steps:
        - id: both
          parallel:
            - {id: a, python: {function: "builtins:str", args: {object: "A{{ loop.iteration }}"}}}
            - {id: b, python: {function: "builtins:str", args: {object: "B{{ loop.iteration }}"}}}
"""
    )
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "COMPLETED"
    assert st.nodes["rounds"].output == {"a": "A2", "b": "B2"}


def test_a_nested_loop_sees_its_own_id_and_iteration(runtime):
    flow = parse_flow_text(
        """
name: nested
steps:
  - id: outer
    loop:
      until: "false"
      max_iterations: 2
      steps:
        - id: inner
          loop:
            until: "false"
            max_iterations: 3
            steps:
              - {id: say, python: {function: "builtins:str", args: {object: "{{ loop.id }}:{{ loop.iteration }}"}}}
"""
    )
    st = asyncio.run(runtime.run(flow))
    assert str(st.status) == "COMPLETED"
    assert st.nodes["outer"].output == "inner:3"
