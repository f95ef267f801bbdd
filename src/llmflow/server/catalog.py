"""The flows a server offers, by name: its config dir's flows, the ``--flows`` it was started
with, and the built-in ones (``quarkus-bootstrap-v1``, ``agent``).

Requests name flows; they never give paths, so a client can only run what the operator
chose to serve. Loaded flows are cached until one of their files changes (composing a flow
takes a fifth of a second).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmflow.errors import FlowNotFoundError
from llmflow.model.diagnostics import did_you_mean
from llmflow.model.loader import LoadedFlow, list_flows, load_flow

BUILTIN_DIR = Path(__file__).parent / "builtin_flows"
# Agent Runner's registered workflow, and the flow its default run type ("agent") runs
DEFAULT_WORKFLOW = "quarkus-bootstrap-v1"
AGENT_FLOW = "agent"


@dataclass(frozen=True)
class Entry:
    name: str
    ref: str  # what load_flow is given: a path, or a name in the config dir
    origin: str  # "flows" (--flows), "config" (config dir) or "builtin"


def _stamp(files: list[str]) -> tuple[Any, ...]:
    out: list[tuple[str, int | None]] = []
    for f in files:
        try:
            out.append((f, Path(f).stat().st_mtime_ns))
        except OSError:
            out.append((f, None))
    return tuple(out)


class FlowCatalog:
    def __init__(
        self,
        config_dir: Path,
        flows: list[str] | None = None,
        builtin_dir: Path = BUILTIN_DIR,
        *,
        only: bool = False,
    ) -> None:
        """``only``: serve exactly ``flows`` (``llmflow serve --flows a,b``, Buttermilk's
        ``+flows=[a,b]``); built-in flows then only when named."""
        self.config_dir = Path(config_dir)
        self.only = only
        self._lock = threading.Lock()  # Hydra composition is not thread-safe
        self._cache: dict[str, tuple[tuple[Any, ...], LoadedFlow]] = {}
        self._builtin = {
            p.stem: Entry(p.stem, str(p), "builtin") for p in sorted(Path(builtin_dir).glob("*.yaml"))
        }
        self._extra: dict[str, Entry] = {}
        for ref in flows or []:
            self.add(ref)

    def add(self, ref: str) -> str:
        """Serve one more flow (a path, or a name in the config dir); loads it to learn its
        name. Raises FlowValidationError / FlowNotFoundError for a bad one."""
        ref = ref.strip()
        if ref in self._builtin and not (self.config_dir / "flows" / f"{ref}.yaml").exists():
            self._extra[ref] = self._builtin[ref]
            return ref
        p = Path(ref).expanduser()
        is_path = p.suffix in (".yaml", ".yml") or "/" in ref or p.exists()
        loaded = self._load_ref(str(p.resolve()) if is_path else ref)
        entry = Entry(loaded.flow.name, str(p.resolve()) if is_path else ref, "flows")
        self._extra[entry.name] = entry
        self._cache[entry.name] = self._cache.pop(entry.ref)
        return entry.name

    def _load_ref(self, ref: str) -> LoadedFlow:
        hit = self._cache.get(ref)
        if hit is not None and _stamp([f for f, _ in hit[0]]) == hit[0]:
            return hit[1]
        with self._lock:
            loaded = load_flow(ref, [], self.config_dir)
        files = list(loaded.composed.files) if loaded.composed else []
        if not files and loaded.source and not loaded.source.startswith("<"):
            files = [loaded.source]
        self._cache[ref] = (_stamp(files), loaded)
        return loaded

    def source_dirs(self) -> list[Path]:
        """The directories this catalog loads flows from: the config dir, each ``--flows``
        path's directory, the built-in flows. Runs may not write to them (steps/trust.py)."""
        dirs = [self.config_dir, BUILTIN_DIR]
        for e in self._extra.values():
            p = Path(e.ref)
            if p.is_absolute():
                dirs.append(p if p.is_dir() else p.parent)
        return dirs

    # -- lookups --------------------------------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        if self.only:
            return dict(sorted(self._extra.items()))
        out = dict(self._builtin)
        for n in list_flows(self.config_dir):
            out[n] = Entry(n, n, "config")
        out.update(self._extra)
        return dict(sorted(out.items()))

    def names(self) -> list[str]:
        return list(self.entries())

    def entry(self, name: str) -> Entry:
        entries = self.entries()
        e = entries.get(name) if isinstance(name, str) else None
        if e is None:
            hint = did_you_mean(str(name), entries) or f"flows: {', '.join(entries) or '(none)'}"
            raise FlowNotFoundError(f"no flow named {name!r} on this server", hint=hint)
        return e

    def cached(self, name: str) -> LoadedFlow | None:
        """The flow of a ``--flows`` entry when its composition is cached and its files are
        unchanged (a few stat calls: cheap enough for the event loop), else None. Names in
        the config dir or built in go through :meth:`load` (the directory is listed)."""
        if name not in self._extra:
            return None
        hit = self._cache.get(name)
        if hit is not None and _stamp([f for f, _ in hit[0]]) == hit[0]:
            return hit[1]
        return None

    def load(self, name: str) -> LoadedFlow:
        """The flow of that name, composed and validated (FlowValidationError if invalid)."""
        e = self.entry(name)
        hit = self._cache.get(name)
        if hit is not None and _stamp([f for f, _ in hit[0]]) == hit[0]:
            return hit[1]
        loaded = self._load_ref(e.ref)
        self._cache[name] = self._cache[e.ref]
        return loaded

    def describe(self, name: str) -> dict[str, Any]:
        """A row of the flow list; an invalid flow is listed with its first problem."""
        e = self.entry(name)
        try:
            f = self.load(name).flow
        except Exception as exc:  # noqa: BLE001 - a broken flow is listed as invalid
            diags = getattr(exc, "diagnostics", None)
            why = diags[0].format() if diags else str(exc)
            return {
                "name": name,
                "origin": e.origin,
                "valid": False,
                "error": why,
                "description": "",
                "version": None,
                "inputs": {},
                "steps": 0,
            }
        return {
            "name": name,
            "origin": e.origin,
            "valid": True,
            "description": f.description,
            "version": f.version,
            "inputs": {
                k: {"type": s.type, "required": s.is_required, "description": s.description}
                for k, s in f.inputs.items()
            },
            "steps": len(f.steps),
        }
