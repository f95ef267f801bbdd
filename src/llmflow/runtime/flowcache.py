"""Composed flows, cached by (what was asked for, the files it was composed from and their
modification times, the overrides): running the same file again costs no composition.

A hit re-checks the stamps (one ``stat`` per file: the flow file, every config file the
composition read, the config dir and its group dirs, so an added option file counts too);
any change composes again. ``${oc.env:...}`` interpolations are read at composition time, so
a cached flow keeps the value the environment had then.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from llmflow.model.loader import LoadedFlow, load_flow

Stamp = tuple[tuple[str, int, int], ...]


def _stamp(paths: list[Path]) -> Stamp | None:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return None
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _inputs_of(loaded: LoadedFlow, config_dir: Path | None) -> list[Path]:
    c = loaded.composed
    paths: list[Path] = []
    if c is not None:
        paths.append(c.target.flow_file)
        paths += [Path(f).resolve() for f in c.files]
        conf = c.target.config_dir
        paths.append(conf)
        try:
            paths += sorted(d for d in conf.iterdir() if d.is_dir() and not d.name.startswith("."))
        except OSError:
            pass
    if config_dir is not None:
        paths.append(Path(config_dir))
    return list(dict.fromkeys(paths))  # each once, in order


class FlowCache:
    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[Any, tuple[LoadedFlow, list[Path], Stamp, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def load(self, ref: str | Path, overrides: list[str], config_dir: Path | None) -> LoadedFlow:
        key = (str(ref), tuple(overrides), str(config_dir) if config_dir else None, os.getcwd())
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            loaded, paths, stamp, _ = entry
            if _stamp(paths) == stamp:
                with self._lock:
                    self._entries.move_to_end(key)
                    self.hits += 1
                return loaded
        loaded = load_flow(ref, overrides, config_dir)
        paths = _inputs_of(loaded, config_dir)
        now = _stamp(paths)
        with self._lock:
            self.misses += 1
            if now is not None:
                self._entries[key] = (loaded, paths, now, {})
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return loaded

    def record(self, loaded: LoadedFlow) -> dict[str, Any]:
        """``loaded.record()`` (resolved spec + provenance), computed once per cached flow."""
        with self._lock:
            for entry in self._entries.values():
                if entry[0] is loaded:
                    memo = entry[3]
                    break
            else:
                memo = None
        if memo is None:
            return loaded.record()
        rec: dict[str, Any] = memo.get("record") or loaded.record()
        memo["record"] = rec
        return rec
