"""What tools need from the process, built once by the runtime and handed to steps as
``ctx.settings["tools"]``: the project's MCP servers, where flows and indexes live, child
runs for flows as tools, and the store (threads)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmflow.model.diagnostics import Diagnostic, Location
from llmflow.model.spec import McpServerSpec

if TYPE_CHECKING:
    from llmflow.settings import Settings
    from llmflow.store.base import Store

PROJECT_SERVERS_FILE = "mcp_servers.yaml"


@dataclass
class ToolServices:
    settings: Settings | _Defaults  # home, config_dir, env: read live
    run_child: Callable[..., Any] | None = None  # (ctx, flow_ref, inputs, overrides, key=) -> outputs
    store: Store | None = None
    _servers: tuple[float, dict[str, McpServerSpec], list[Diagnostic]] | None = None

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def config_dir(self) -> Path | None:
        d = getattr(self.settings, "config_dir", None)
        return Path(d) if d else None

    @property
    def env(self) -> Mapping[str, str]:
        return getattr(self.settings, "env", None) or {}

    @property
    def state_dir(self) -> Path:
        return self.home / ".llmflow"

    @property
    def conf_dir(self) -> Path:
        d = self.config_dir or Path("conf")
        return d if d.is_absolute() else (self.home / d)

    @property
    def index_dir(self) -> Path:
        return Path(getattr(self.settings, "index_dir", None) or self.state_dir / "indexes")

    @property
    def thread_tokens(self) -> int:
        """The token budget of a thread's history (``LLMFLOW_THREAD_TOKENS``)."""
        from llmflow.tools.threads import DEFAULT_BUDGET

        return int(getattr(self.settings, "thread_tokens", DEFAULT_BUDGET))

    @property
    def servers_file(self) -> Path:
        return self.conf_dir / PROJECT_SERVERS_FILE

    def project_servers(self) -> tuple[dict[str, McpServerSpec], list[Diagnostic]]:
        """The operator's MCP servers (``<config dir>/mcp_servers.yaml``: ``{name: {command:
        ..., args: [...]} | {url: ...}}``), re-read when the file changes."""
        path = self.servers_file
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}, []
        if self._servers is not None and self._servers[0] == mtime:
            return self._servers[1], self._servers[2]
        servers, diags = parse_servers_file(path)
        self._servers = (mtime, servers, diags)
        return servers, diags


def parse_servers_file(path: Path) -> tuple[dict[str, McpServerSpec], list[Diagnostic]]:
    import yaml
    from pydantic import ValidationError

    where = Location(str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return {}, [
            Diagnostic(
                "invalid-mcp-servers",
                f"cannot read {path}: {exc}",
                "",
                "write it as {name: {command: ..., args: [...]} | {url: ...}}",
                where,
            )
        ]
    if isinstance(data, dict) and isinstance(data.get("mcp_servers"), dict):
        data = data["mcp_servers"]
    if not isinstance(data, dict):
        return {}, [
            Diagnostic(
                "invalid-mcp-servers",
                f"{path} must map server names to {{command: ...}} or {{url: ...}}",
                "",
                None,
                where,
            )
        ]
    out: dict[str, McpServerSpec] = {}
    diags: list[Diagnostic] = []
    for name, raw in data.items():
        try:
            out[str(name)] = McpServerSpec.model_validate(raw)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            diags.append(
                Diagnostic(
                    "invalid-mcp-servers",
                    f"MCP server {name!r} in {path}: {msg}",
                    str(name),
                    "give 'command' (stdio) or 'url' (streamable HTTP)",
                    where,
                )
            )
    return out, diags


def services_of(ctx: Any) -> ToolServices:
    """The services a step was given, or defaults for a bare runner (tests, embedders)."""
    s = ctx.settings.get("tools") if isinstance(getattr(ctx, "settings", None), dict) else None
    if isinstance(s, ToolServices):
        return s
    return ToolServices(settings=_Defaults(Path.cwd()))


@dataclass
class _Defaults:
    home: Path
    config_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
