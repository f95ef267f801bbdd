"""The compatibility tests reuse the server tests' fixtures: an isolated home, an app built
from explicit settings (FastAPI's app or a real Uvicorn on loopback)."""

from server.conftest import client, database_url, home, live, make_app  # noqa: F401 - fixtures
