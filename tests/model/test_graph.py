"""Graph normalisation (pipeline needs, parallel flattening, routes, loops) and Mermaid output."""

from __future__ import annotations

from llmflow.model.graph import build_graph, flow_graph, loop_body_graph, to_mermaid
from llmflow.model.loader import parse_flow_text


def needs(text: str) -> dict[str, tuple[str, ...]]:
    g = flow_graph(parse_flow_text(text))
    return {n: g.nodes[n].needs for n in g.order}


def test_a_plain_list_is_a_pipeline():
    assert needs("name: f\nsteps: [{id: a, llm: x}, {id: b, llm: x}, {id: c, llm: x}]\n") == {
        "a": (),
        "b": ("a",),
        "c": ("b",),
    }


def test_explicit_needs_replace_the_pipeline_order_and_empty_needs_make_a_root():
    assert needs(
        "name: f\nsteps: [{id: a, llm: x}, {id: b, llm: x, needs: []}, {id: c, llm: x, needs: [a, b]}]\n"
    ) == {
        "a": (),
        "b": (),
        "c": ("a", "b"),
    }


def test_parallel_children_need_the_groups_predecessors_and_the_group_is_a_barrier():
    text = "name: f\nsteps:\n  - {id: a, llm: x}\n  - {id: g, parallel: [{id: p, llm: x}, {id: q, llm: x}]}\n  - {id: z, llm: x}\n"
    g = flow_graph(parse_flow_text(text))
    assert g.order == ["a", "p", "q", "g", "z"]
    assert {n: g.nodes[n].needs for n in g.order} == {
        "a": (),
        "p": ("a",),
        "q": ("a",),
        "g": ("p", "q"),
        "z": ("g",),
    }
    assert (g.nodes["p"].group, g.nodes["g"].group) == ("g", None)


def test_nested_parallel_groups_are_flattened_too():
    text = "name: f\nsteps:\n  - {id: a, llm: x}\n  - id: g\n    parallel:\n      - {id: p, llm: x}\n      - {id: h, parallel: [{id: q, llm: x}, {id: r, llm: x}]}\n"
    g = flow_graph(parse_flow_text(text))
    assert {n: g.nodes[n].needs for n in g.order} == {
        "a": (),
        "p": ("a",),
        "q": ("a",),
        "r": ("a",),
        "h": ("q", "r"),
        "g": ("p", "h"),
    }
    assert (g.nodes["q"].group, g.nodes["h"].group) == ("h", "g")


def test_route_targets_need_the_route():
    text = (
        "name: f\nsteps:\n  - {id: a, llm: x}\n  - {id: r, route: {routes: [{when: 'true', to: b}], default: c}}\n"
        "  - {id: b, llm: x}\n  - {id: c, llm: x, needs: [a]}\n  - {id: d, llm: x, needs: [b, c]}\n"
    )
    assert needs(text) == {"a": (), "r": ("a",), "b": ("r",), "c": ("a", "r"), "d": ("b", "c")}


def test_loop_bodies_stay_inside_their_loop():
    text = (
        "name: f\nsteps:\n  - {id: a, llm: x}\n  - id: lp\n    loop: {until: 'true', steps: [{id: b, llm: x}, {id: c, llm: x}]}\n"
        "  - {id: z, llm: x}\n"
    )
    f = parse_flow_text(text)
    g = flow_graph(f)
    assert g.order == ["a", "lp", "z"]
    body = loop_body_graph(f.step("lp"))
    assert {n: body.nodes[n].needs for n in body.order} == {"b": (), "c": ("b",)}


def test_downstream_dependents_and_cycles():
    f = parse_flow_text(
        "name: f\nsteps: [{id: a, llm: x}, {id: b, llm: x}, {id: c, llm: x, needs: [a]}, {id: d, llm: x}]\n"
    )
    g = build_graph(f.steps)
    assert g.dependents("a") == ["b", "c"]
    assert g.downstream("a") == ["b", "c", "d"]
    assert g.find_cycle() is None


def test_mermaid_output():
    text = (
        "name: f\nsteps:\n  - {id: a, llm: x}\n  - {id: g, parallel: [{id: p, llm: x}, {id: q, shell: ls}]}\n"
        "  - {id: r, route: {routes: [{when: 'true', to: b}], default: c}}\n  - {id: b, llm: x}\n  - {id: c, llm: x}\n"
        "  - id: lp\n    needs: [b, c]\n    loop: {until: 'true', steps: [{id: s, llm: x}, {id: t, llm: x}]}\n"
    )
    assert to_mermaid(parse_flow_text(text)) == (
        "flowchart TD\n"
        '    a["a<br/><small>llm</small>"]\n'
        '    p["p<br/><small>llm</small>"]\n'
        '    q["q<br/><small>shell</small>"]\n'
        '    g[["g<br/><small>parallel</small>"]]\n'
        '    r{{"r<br/><small>route</small>"}}\n'
        '    b["b<br/><small>llm</small>"]\n'
        '    c["c<br/><small>llm</small>"]\n'
        '    lp["lp<br/><small>loop</small>"]\n'
        '    lp__s["s<br/><small>llm (loop)</small>"]\n'
        "    lp -.-> lp__s\n"
        '    lp__t["t<br/><small>llm (loop)</small>"]\n'
        "    lp__s -.-> lp__t\n"
        "    lp__t -. until .-> lp\n"
        "    a --> p\n"
        "    a --> q\n"
        "    p --> g\n"
        "    q --> g\n"
        "    g --> r\n"
        "    r -->|route| b\n"
        "    r -->|route| c\n"
        "    b --> lp\n"
        "    c --> lp\n"
    )


def test_mermaid_renames_ids_mermaid_reserves_and_colours_statuses():
    f = parse_flow_text("name: f\nsteps: [{id: start, llm: x}, {id: end, llm: x}]\n")
    out = to_mermaid(f, {"start": "COMPLETED", "end": "failed", "zz": "COMPLETED"})
    assert '    end_step["end<br/><small>llm</small>"]\n' in out
    assert "    start --> end_step\n" in out
    assert out.endswith("    style start fill:#b7eb8f\n    style end_step fill:#ffa39e\n")
