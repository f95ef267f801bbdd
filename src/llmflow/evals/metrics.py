"""Metrics: what a scored record is measured with.

Every metric returns a :class:`MetricResult`: a score in [0, 1], pass/fail against the
metric's threshold, and a reason in words. A metric sees a :class:`Sample`: the run's
output (the flow's only output, or the one its ``output:`` option names, or all of them),
the record's expected value, the run's inputs, and the run itself.

=============  ===============================================  ============  ===========
type           passes when                                      shorthand     threshold
=============  ===============================================  ============  ===========
exact          output == expected (strings stripped)            --            1.0
contains       output contains ``value`` (default: expected)    value         1.0
regex          ``pattern`` matches somewhere in the output      pattern       1.0
json_schema    output is JSON valid against ``schema``          schema        1.0
field          output[field] == expected[field], per field      field         1.0
numeric        |output - expected| <= ``tolerance``             tolerance     1.0
similarity     cosine of embeddings >= threshold                threshold     0.8
judge          an LLM grades the output against ``rubric``      rubric        0.5
python         a function says so (``@llmflow.metric``)         function      0.5
bdd            SuperOptiX's scenario confidence >= threshold    --            0.6
=============  ===============================================  ============  ===========

Metrics are declared as data (:func:`llmflow.evals.declare.parse_metric`): a name (``exact``, a metric
registered with ``@llmflow.metric``, one declared in the eval file), ``TYPE=ARG`` for the
shorthand (``contains=positive``, ``judge=Is it polite?``), ``module:function`` or
``file.py:function`` for a Python function, or a mapping (``{type: numeric, field: score,
tolerance: 0.5}``; a YAML flow mapping on the command line).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llmflow.errors import EvalError
from llmflow.evals.registry import resolve_metric_function

if TYPE_CHECKING:
    from llmflow.runtime.ports import RunService

Embed = Callable[[list[str], str | None], list[list[float]]]


@dataclass(frozen=True)
class MetricResult:
    score: float
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"score": round(self.score, 6), "passed": self.passed, "reason": self.reason}
        d.update(self.details)
        return d


@dataclass
class Sample:
    """What a metric scores: one finished run of one record."""

    output: Any
    expected: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    record_id: str = ""
    run_id: str = ""
    run_seq: int = 0


@dataclass
class ScoringContext:
    """What some metrics need beyond the sample: the runtime (the judge runs as a run), the
    evaluation id (names the judge's run), and the embedding function (similarity)."""

    runtime: RunService | None = None
    eval_id: str = ""
    embed: Embed | None = None


def clamp(x: float) -> float:
    if x != x:  # NaN
        return 0.0
    return max(0.0, min(1.0, float(x)))


def as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def as_json(v: Any) -> Any:
    """A JSON value from an output: parsed if it is text (a fenced block is unwrapped)."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    if fence:
        s = fence.group(1).strip()
    return json.loads(s)


def short(v: Any, n: int = 60) -> str:
    t = as_text(v).replace("\n", " ")
    return json.dumps(t[:n] + ("..." if len(t) > n else ""), ensure_ascii=False)


class Metric:
    """A configured metric. Subclasses set ``TYPE``, ``SHORTHAND`` and ``OPTIONS`` and
    implement :meth:`measure`; :meth:`score` adds the threshold and error handling."""

    TYPE: ClassVar[str] = ""
    SHORTHAND: ClassVar[str | None] = None
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    DEFAULT_THRESHOLD: ClassVar[float] = 1.0
    NEEDS_EXPECTED: ClassVar[bool] = False

    def __init__(
        self, name: str, threshold: float | None = None, output: str | None = None, **options: Any
    ) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(("name", "type", "threshold", "output", *self.OPTIONS))
            raise EvalError(
                f"metric {name!r} ({self.TYPE}): unknown option(s) {', '.join(unknown)}",
                hint=f"{self.TYPE} takes: {known}",
            )
        self.name = name
        self.threshold = self.DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise EvalError(f"metric {name!r}: threshold {threshold} is not in [0, 1]")
        self.output_key = output
        self.options = options
        self.setup()

    def setup(self) -> None:
        """Check the options once, before anything runs (bad input fails early)."""

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.TYPE, "threshold": self.threshold}
        if self.output_key:
            d["output"] = self.output_key
        d.update({k: v for k, v in self.options.items() if not callable(v)})
        return d

    def select(self, sample: Sample) -> Any:
        if not self.output_key:
            return sample.output
        from llmflow.batch.jobs import get_path

        return get_path(sample.outputs or {}, self.output_key)

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        raise NotImplementedError

    def verdict(self, score: float) -> bool:
        return score >= self.threshold - 1e-12

    async def score(self, sample: Sample, ctx: ScoringContext) -> MetricResult:
        if self.NEEDS_EXPECTED and sample.expected is None and self.TYPE != "contains":
            return MetricResult(
                0.0,
                False,
                f"no expected value for record {sample.record_id!r}: {self.TYPE} compares the output with it",
            )
        try:
            score, reason, details = await self.measure(sample, ctx)
        except EvalError as exc:
            return MetricResult(0.0, False, exc.message)
        except Exception as exc:  # noqa: BLE001 - a broken metric scores 0 for this record, never stops the evaluation
            return MetricResult(0.0, False, f"metric {self.name!r} failed: {type(exc).__name__}: {exc}")
        s = clamp(score)
        return MetricResult(s, self.verdict(s), reason, details)


def _norm(v: Any, ignore_case: bool) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return v.lower() if ignore_case else v
    return v


class Exact(Metric):
    TYPE = "exact"
    OPTIONS = ("ignore_case", "expected")
    NEEDS_EXPECTED = True

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        ic = bool(self.options.get("ignore_case", False))
        out, exp = self.select(sample), self.options.get("expected", sample.expected)
        if isinstance(exp, dict | list) and isinstance(out, str):
            try:
                out = as_json(out)
            except ValueError:
                pass
        if not isinstance(exp, dict | list):
            out, exp = as_text(out), as_text(exp)
        ok = _norm(out, ic) == _norm(exp, ic)
        return (
            (1.0 if ok else 0.0),
            (
                "output equals the expected value"
                if ok
                else f"output {short(out)} differs from expected {short(exp)}"
            ),
            {},
        )


class Contains(Metric):
    TYPE = "contains"
    SHORTHAND = "value"
    OPTIONS = ("value", "ignore_case", "all")
    NEEDS_EXPECTED = True

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        values = self.options.get("value", sample.expected)
        if values is None:
            raise EvalError(
                f"no expected value for record {sample.record_id!r} and no 'value' for metric {self.name!r}"
            )
        values = [as_text(v) for v in (values if isinstance(values, list) else [values])]
        ic = bool(self.options.get("ignore_case", False))
        text = as_text(self.select(sample))
        hay = text.lower() if ic else text
        found = [v for v in values if (v.lower() if ic else v) in hay]
        missing = [v for v in values if v not in found]
        if self.options.get("all", True) is False:  # any of them
            ok = bool(found)
            return (
                (1.0 if ok else 0.0),
                (
                    f"output contains {short(found[0])}"
                    if ok
                    else f"output contains none of {', '.join(short(v) for v in values)}"
                ),
                {},
            )
        score = len(found) / len(values)
        reason = (
            "output contains " + ", ".join(short(v) for v in found)
            if not missing
            else "output lacks " + ", ".join(short(v) for v in missing)
        )
        return score, reason, {}


class Regex(Metric):
    TYPE = "regex"
    SHORTHAND = "pattern"
    OPTIONS = ("pattern", "ignore_case")

    def setup(self) -> None:
        pattern = self.options.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise EvalError(
                f"metric {self.name!r} (regex) needs a 'pattern'",
                hint="for example regex='^(positive|negative)$'",
            )
        try:
            self._re = re.compile(pattern, re.I if self.options.get("ignore_case") else 0)
        except re.error as exc:
            raise EvalError(f"metric {self.name!r}: invalid regular expression {pattern!r}: {exc}") from None

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        text = as_text(self.select(sample))
        m = self._re.search(text)
        return (
            (1.0 if m else 0.0),
            (
                f"output matches /{self._re.pattern}/ at {short(m.group(0))}"
                if m
                else f"output {short(text)} does not match /{self._re.pattern}/"
            ),
            {},
        )


class JsonSchema(Metric):
    TYPE = "json_schema"
    SHORTHAND = "schema"
    OPTIONS = ("schema",)

    def setup(self) -> None:
        import jsonschema

        schema = self.options.get("schema")
        if isinstance(schema, str):
            p = Path(schema)
            try:
                schema = (
                    json.loads(p.read_text(encoding="utf-8"))
                    if p.suffix == ".json" and p.exists()
                    else json.loads(schema)
                )
            except (OSError, ValueError) as exc:
                raise EvalError(
                    f"metric {self.name!r}: 'schema' is neither a JSON schema nor a readable .json file: {exc}"
                ) from None
        if not isinstance(schema, dict):
            raise EvalError(
                f"metric {self.name!r} (json_schema) needs a 'schema' (a mapping, JSON text or a .json file)"
            )
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise EvalError(f"metric {self.name!r}: invalid JSON schema: {exc.message}") from None
        self.options["schema"] = schema
        self._validator = jsonschema.Draft202012Validator(schema)

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        try:
            value = as_json(self.select(sample))
        except ValueError as exc:
            return 0.0, f"output is not JSON: {exc}", {}
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return 1.0, "output is valid against the schema", {}
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        return 0.0, f"{where}: {e.message}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""), {}


class FieldEquals(Metric):
    TYPE = "field"
    SHORTHAND = "field"
    OPTIONS = ("field", "fields", "ignore_case")
    NEEDS_EXPECTED = True

    def setup(self) -> None:
        fields_ = self.options.get("fields") or ([self.options["field"]] if self.options.get("field") else [])
        if not fields_ or not all(isinstance(f, str) and f for f in fields_):
            raise EvalError(f"metric {self.name!r} (field) needs 'field: NAME' or 'fields: [A, B]'")
        self._fields = list(fields_)

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        from llmflow.batch.jobs import get_path

        ic = bool(self.options.get("ignore_case", True))
        out = self.select(sample)
        try:
            out = as_json(out)
        except ValueError:
            pass
        if not isinstance(out, dict):
            out = {self._fields[0]: out} if len(self._fields) == 1 else {}
        exp = sample.expected
        if isinstance(exp, str):
            try:
                exp = as_json(exp) if exp.strip().startswith("{") else exp
            except ValueError:
                pass
        bad: list[str] = []
        for f in self._fields:
            want = get_path(exp, f) if isinstance(exp, dict) else exp
            got = get_path(out, f)
            same = _norm(got, ic) == _norm(want, ic) or (
                not isinstance(want, dict | list) and _norm(as_text(got), ic) == _norm(as_text(want), ic)
            )
            if not same:
                bad.append(f"{f}: {short(got, 30)} != {short(want, 30)}")
        score = (len(self._fields) - len(bad)) / len(self._fields)
        return score, ("fields match: " + ", ".join(self._fields) if not bad else "; ".join(bad)), {}


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def as_number(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(v, int | float):
        return float(v)
    m = _NUMBER.search(as_text(v))
    if m is None:
        raise ValueError(f"no number in {short(v)}")
    return float(m.group(0))


class Numeric(Metric):
    TYPE = "numeric"
    SHORTHAND = "tolerance"
    OPTIONS = ("tolerance", "relative", "field", "expected")
    NEEDS_EXPECTED = True

    def setup(self) -> None:
        for k in ("tolerance", "relative"):
            v = self.options.get(k)
            if v is not None:
                try:
                    self.options[k] = float(v)
                except (TypeError, ValueError):
                    raise EvalError(f"metric {self.name!r}: {k} must be a number, not {v!r}") from None
                if self.options[k] < 0:
                    raise EvalError(f"metric {self.name!r}: {k} must be 0 or more")

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        from llmflow.batch.jobs import get_path

        out, exp = self.select(sample), self.options.get("expected", sample.expected)
        f = self.options.get("field")
        if f:
            try:
                out = as_json(out)
            except ValueError:
                pass
            out = get_path(out, f) if isinstance(out, dict) else out
            exp = get_path(exp, f) if isinstance(exp, dict) else exp
        try:
            got, want = as_number(out), as_number(exp)
        except ValueError as exc:
            return 0.0, f"not a number: {exc}", {}
        tol = max(self.options.get("tolerance") or 0.0, (self.options.get("relative") or 0.0) * abs(want))
        diff = abs(got - want)
        ok = diff <= tol + 1e-12
        return (
            (1.0 if ok else 0.0),
            f"{got:g} vs {want:g}: off by {diff:g} ({'within' if ok else 'beyond'} tolerance {tol:g})",
            {"difference": diff},
        )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class Similarity(Metric):
    TYPE = "similarity"
    SHORTHAND = "threshold"
    OPTIONS = ("model",)
    DEFAULT_THRESHOLD = 0.8
    NEEDS_EXPECTED = True

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        embed = ctx.embed or default_embed()
        a, b = as_text(self.select(sample)), as_text(sample.expected)
        va, vb = await asyncio.to_thread(embed, [a, b], self.options.get("model"))
        sim = cosine(va, vb)
        return (
            sim,
            f"cosine similarity {sim:.3f} to the expected text (threshold {self.threshold:g})",
            {"similarity": round(sim, 6)},
        )


def default_embed() -> Embed:
    """The embedding function of ``llmflow.providers.embeddings`` (the embedded model by
    default; ``provider:model`` for a provider's)."""
    try:
        from llmflow.providers.embeddings import embed
    except ImportError:
        raise EvalError(
            "the similarity metric needs llmflow.providers.embeddings, which this installation lacks",
            hint="upgrade llmflow, or use the judge or contains metrics",
        ) from None

    def embed_texts(texts: list[str], model: str | None = None) -> Any:
        return embed(texts, model=model)

    return embed_texts


class Judge(Metric):
    TYPE = "judge"
    SHORTHAND = "rubric"
    OPTIONS = ("rubric", "model", "params")
    DEFAULT_THRESHOLD = 0.5

    def setup(self) -> None:
        if not isinstance(self.options.get("rubric"), str) or not self.options["rubric"].strip():
            raise EvalError(
                f"metric {self.name!r} (judge) needs a 'rubric': what a good output is",
                hint="for example judge='Is the answer polite and correct?'",
            )
        model = self.options.get("model")
        if model is not None and (not isinstance(model, str) or ":" not in model):
            raise EvalError(
                f"metric {self.name!r}: judge model {model!r} is not provider:model",
                hint="for example model: fake:judge or local:gemma3-270m",
            )

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        from llmflow.evals.judge import judge

        return await judge(self, sample, ctx)


class Python(Metric):
    TYPE = "python"
    SHORTHAND = "function"
    OPTIONS = ("function", "args")
    DEFAULT_THRESHOLD = 0.5

    def __init__(
        self, name: str, threshold: float | None = None, output: str | None = None, **options: Any
    ) -> None:
        fn = options.get("function")
        self._fn = fn if callable(fn) else resolve_metric_function(str(fn or ""))
        info = getattr(self._fn, "__llmflow_metric__", None)
        if threshold is None and info is not None:
            threshold = info.threshold  # the decorator's threshold, unless the declaration sets one
        try:
            params = inspect.signature(self._fn).parameters
            self._params, self._var_kw = set(params), any(p.kind is p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            self._params, self._var_kw = set(), True
        super().__init__(name, threshold, output, **options)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        fn = self.options.get("function")
        info = getattr(fn, "__llmflow_metric__", None)
        # stored so a resumed evaluation finds it again: by its registered name, else module:name
        d["function"] = (
            fn
            if isinstance(fn, str)
            else info.name
            if info
            else f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
        )
        return d

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        offered = {
            "output": self.select(sample),
            "expected": sample.expected,
            "inputs": sample.inputs,
            "outputs": sample.outputs,
            "record_id": sample.record_id,
            "run_id": sample.run_id,
            "sample": sample,
            **dict(self.options.get("args") or {}),
        }
        kwargs = offered if self._var_kw else {k: v for k, v in offered.items() if k in self._params}
        if inspect.iscoroutinefunction(self._fn):
            value = await self._fn(**kwargs)
        else:
            value = await asyncio.to_thread(self._fn, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        return self._interpret(value)

    def _interpret(self, value: Any) -> tuple[float, str, dict[str, Any]]:
        name = self.name
        if isinstance(value, MetricResult):
            return value.score, value.reason, dict(value.details)
        if isinstance(value, bool):
            return (1.0 if value else 0.0), f"{name}: {'yes' if value else 'no'}", {}
        if isinstance(value, int | float):
            return float(value), f"{name}: {float(value):.3f}", {}
        if isinstance(value, tuple) and len(value) == 2:
            s, why = value
            return (float(s) if not isinstance(s, bool) else float(s)), str(why), {}
        if isinstance(value, Mapping) and "score" in value:
            return (
                float(value["score"]),
                str(value.get("reason") or f"{name}: {float(value['score']):.3f}"),
                {k: v for k, v in value.items() if k not in ("score", "reason", "passed")},
            )
        raise EvalError(
            f"metric {name!r} returned {type(value).__name__}; return a bool, a number in [0, 1], (score, reason), a dict with 'score', or a MetricResult"
        )


# -- SuperOptiX's BDD scenario confidence -----------------------------------------------------
_COMMON = frozenset(
    "the and or but in on at to for of with by is are was were be been have has had do does did will would could should may might can this that these those".split()
)


def _keywords(text: str) -> set[str]:
    return {w.lower() for w in text.split() if len(w) > 3 and w.lower() not in _COMMON}


class Bdd(Metric):
    """SuperOptiX's scenario check: 0.5 word overlap (Jaccard) + 0.2 keyword presence + 0.2
    structure (lines, bullets) + 0.1 length ratio, passing at 0.6; an expected output of
    several fields is compared field by field when the output is a mapping."""

    TYPE = "bdd"
    DEFAULT_THRESHOLD = 0.6

    async def measure(self, sample: Sample, ctx: ScoringContext) -> tuple[float, str, dict[str, Any]]:
        out, exp = self.select(sample), sample.expected
        if exp is None or exp == {} or exp == "":
            ok = bool(as_text(out).strip())
            return (
                (1.0 if ok else 0.0),
                ("a non-empty response" if ok else "Empty or no response generated"),
                {},
            )
        if isinstance(exp, dict) and isinstance(out, str):
            try:
                parsed = as_json(out)
                out = parsed if isinstance(parsed, dict) else out
            except ValueError:
                pass
        if isinstance(exp, dict) and isinstance(out, dict) and all(k in out for k in exp):
            actual, expected = (
                "\n".join(as_text(out[k]) for k in exp),
                "\n".join(as_text(v) for v in exp.values()),
            )
        else:
            actual = as_text(out)
            expected = (
                as_text(next(iter(exp.values()))) if isinstance(exp, dict) and len(exp) == 1 else as_text(exp)
            )
        actual, expected = actual.strip(), expected.strip()
        if not actual:
            return 0.0, "Empty response generated", {}
        a, e = set(actual.lower().split()), set(expected.lower().split())
        semantic = len(a & e) / len(a | e) if e else (1.0 if not a else 0.5)
        ek = _keywords(expected)
        keyword = len(_keywords(actual) & ek) / len(ek) if ek else 1.0
        la, le = len(actual.split()), len(expected.split())
        ratio = la / le if le else 0.0
        length = 1.0 if 0.5 <= ratio <= 2.0 else 0.7 if (0.25 <= ratio < 0.5 or 2.0 < ratio <= 4.0) else 0.3
        lines_a, lines_e = len(actual.split("\n")), len(expected.split("\n"))
        bullets = 1.0 if any(c in actual for c in "•*-") == any(c in expected for c in "•*-") else 0.5
        structure = (min(lines_a, lines_e) / max(lines_a, lines_e) + bullets) / 2
        score = 0.5 * semantic + 0.2 * keyword + 0.2 * structure + 0.1 * length
        breakdown = {
            "semantic_similarity": round(semantic, 4),
            "keyword_presence": round(keyword, 4),
            "structure_match": round(structure, 4),
            "output_length": round(length, 4),
        }
        if score >= self.threshold:
            reason = f"confidence {score:.2f}"
        elif semantic < 0.5:
            reason = "semantic meaning differs significantly"
        elif keyword < 0.3:
            reason = "missing key terms or concepts"
        elif structure < 0.4:
            reason = "output structure doesn't match expectations"
        elif length < 0.5:
            reason = "response length inappropriate"
        else:
            reason = "overall quality below threshold"
        return score, reason, {"criteria_breakdown": breakdown}
