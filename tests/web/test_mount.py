"""mount_console: what the server answers for the console's paths (no browser needed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmflow.server.app import create_app
from llmflow.server.config import ServerConfig
from llmflow.settings import Settings
from llmflow.web.mount import ASSETS, load_assets

from .helpers import env_for, make_home

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def client_for(home: Path, **env: str) -> TestClient:
    e = env_for(home, **env)
    return TestClient(create_app(Settings.from_env(e), ServerConfig.from_env(e, config_dir=home / "conf")))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(make_home(tmp_path)) as c:
        yield c


def test_root_serves_the_console_to_browsers_only(client: TestClient) -> None:
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["vary"] == "Accept"
    assert "__BUILD__" not in r.text
    api = client.get("/", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")


def test_assets_are_versioned_and_cached_for_a_year(client: TestClient) -> None:
    page = client.get("/", headers=HTML).text
    src = re.search(r'src="(/ui/([0-9a-f]{12})/js/app.js)"', page)
    assert src, page
    r = client.get(src.group(1))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get(src.group(1), headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    # a page from before an upgrade gets the current file, not cached for long
    old = client.get("/ui/000000000000/js/app.js")
    assert old.status_code == 200 and old.headers["cache-control"] == "no-cache"
    assert client.get(f"/ui/{src.group(2)}/js/nope.js").status_code == 404
    assert client.get(f"/ui/{src.group(2)}/../mount.py").status_code == 404
    assert client.get(f"/ui/{src.group(2)}/index.html").status_code == 404


def test_the_console_shadows_no_api_route(client: TestClient) -> None:
    # Agent Runner's /runs and /projects, Buttermilk's /flows: their own answers, to browsers too
    for path in ("/runs", "/projects", "/flows", "/health", "/api/v1/runs"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 200, path
        assert "/ui/" not in r.text, f"{path} answered with the console page"
    assert client.get("/runs", headers=HTML).headers["content-type"].startswith("application/json")
    assert client.get("/docs", headers=HTML).text.lower().count("swagger") >= 1


def test_with_a_token_the_console_loads_but_the_api_needs_it(tmp_path: Path) -> None:
    with client_for(make_home(tmp_path), LLMFLOW_API_TOKEN="tok") as c:
        assert c.get("/", headers=HTML).status_code == 200
        page = c.get("/", headers=HTML).text
        js = re.search(r'src="(/ui/[0-9a-f]{12}/js/app.js)"', page).group(1)
        assert c.get(js).status_code == 200
        assert c.get("/api/v1/runs").status_code == 401
        assert c.get("/api/v1/events/stream").status_code == 401
        assert c.get("/", headers={"Accept": "application/json"}).status_code == 401
        assert c.get("/api/v1/runs", headers={"Authorization": "Bearer tok"}).status_code == 200


def test_every_asset_is_package_data_and_modules_stay_small() -> None:
    build, assets = load_assets()
    assert {"index.html", "app.css", "favicon.svg", "js/app.js", "js/api.js"} <= set(assets)
    for rel in assets:
        # vendor/: maintained libraries as their authors ship them (scripts/vendor-web-libs.sh)
        if rel.endswith(".js") and not rel.startswith("vendor/"):
            lines = (ASSETS / rel).read_text(encoding="utf-8").count("\n")
            assert lines < 600, f"{rel} has {lines} lines: split it by page"
    # every relative import of every module resolves to a shipped file
    for rel in [r for r in assets if r.endswith(".js")]:
        text = (ASSETS / rel).read_text(encoding="utf-8")
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', text):
            resolved = (Path(rel).parent / target).as_posix()
            parts: list[str] = []
            for part in resolved.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            assert "/".join(parts) in assets, f"{rel} imports {target}, which is not shipped"
    # each vendored library ships with its licence
    for lib in ("marked", "dompurify", "diff", "dagre"):
        assert (ASSETS / "vendor" / lib / "LICENSE").is_file(), lib
