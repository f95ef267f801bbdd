"""Property tests for the broadcast aggregation strategies."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmflow.engine.aggregate import AggregationError, Response, aggregate, normalise

answers = st.sampled_from(["yes", "no", "maybe", "Yes.", " NO "])


@st.composite
def responses(draw, min_size=1):
    outs = draw(st.lists(answers, min_size=min_size, max_size=9))
    order = draw(st.permutations(list(range(len(outs)))))
    return [Response(f"a{i}", o, order[i]) for i, o in enumerate(outs)]


@given(responses())
def test_majority_picks_a_most_common_answer(rs):
    got = aggregate("majority", rs)
    counts = Counter(normalise(r.output) for r in rs)
    assert counts[normalise(got["output"])] == max(counts.values())


@given(responses())
def test_majority_ties_go_to_the_earliest_answer(rs):
    got = aggregate("majority", rs)
    counts = Counter(normalise(r.output) for r in rs)
    best = max(counts.values())
    tied = {k for k, v in counts.items() if v == best}
    first = min((r for r in rs if normalise(r.output) in tied), key=lambda r: r.order)
    assert normalise(got["output"]) == normalise(first.output)


@given(responses())
def test_first_is_the_earliest_arrival(rs):
    assert aggregate("first", rs)["output"] == min(rs, key=lambda r: r.order).output


@given(responses())
def test_all_keeps_every_answer(rs):
    got = aggregate("all", rs)["output"]
    assert got == {r.agent: r.output for r in rs}


@given(responses(), st.floats(0.1, 1.0))
def test_consensus_holds_only_above_the_threshold(rs, threshold):
    got = aggregate("consensus", rs, threshold=threshold, fallback="majority", total_agents=len(rs))
    counts = Counter(normalise(r.output) for r in rs)
    share = max(counts.values()) / len(rs)
    if len(rs) > 1:
        assert got["consensus"] == (share >= threshold)


@given(responses(min_size=2), st.floats(0.1, 1.0))
def test_consensus_with_fail_fallback_raises_without_agreement(rs, threshold):
    counts = Counter(normalise(r.output) for r in rs)
    share = max(counts.values()) / len(rs)
    if share >= threshold:
        assert aggregate("consensus", rs, threshold=threshold, fallback="fail")["consensus"]
    else:
        with pytest.raises(AggregationError, match="no consensus"):
            aggregate("consensus", rs, threshold=threshold, fallback="fail")


@given(responses(), st.dictionaries(st.sampled_from([f"a{i}" for i in range(9)]), st.floats(0.1, 10)))
def test_weighted_picks_the_heaviest_answer(rs, weights):
    got = aggregate("weighted", rs, weights=weights)
    totals: Counter[str] = Counter()
    for r in rs:
        totals[normalise(r.output)] += weights.get(r.agent, 1.0)
    assert totals[normalise(got["output"])] == pytest.approx(max(totals.values()))


@given(responses())
def test_min_responses_is_enforced(rs):
    with pytest.raises(AggregationError, match="required"):
        aggregate("majority", rs, min_responses=len(rs) + 1)
