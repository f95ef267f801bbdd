"""Keep file and shell steps inside the run's workspace."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from pathlib import Path

from llmflow.errors import WorkspaceError


def safe_path(workspace: Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``workspace``; reject absolute paths, ``..`` escapes and
    symlinks that lead outside."""
    if not rel or not str(rel).strip():
        raise WorkspaceError("empty path", hint="give a path relative to the run's workspace")
    p = Path(str(rel).strip())
    if p.is_absolute():
        raise WorkspaceError(
            f"absolute path {rel!r} is not allowed", hint="use a path relative to the workspace"
        )
    root = workspace.resolve()
    target = (root / p).resolve()
    if target != root and root not in target.parents:
        raise WorkspaceError(
            f"path {rel!r} escapes the workspace {root}", hint="remove '..' or the symlink that leads outside"
        )
    return target


def file_record(workspace: Path, path: Path) -> dict[str, object]:
    data = path.read_bytes()
    return {
        "path": str(path.relative_to(workspace.resolve()))
        if workspace.resolve() in path.parents
        else str(path),
        "abs_path": str(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime": mimetypes.guess_type(path.name)[0] or "text/plain",
    }


def atomic_write(path: Path, content: str, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if append:
        with path.open("a", encoding="utf-8") as f:
            f.write(content)
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
