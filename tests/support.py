"""Helpers every test directory shares, written once: waiting on a condition, and a real
Uvicorn serving an ASGI app on a free loopback port.

``wait_until`` is how a test waits for something another thread or process does: it
checks the condition until it holds and fails with what it waited for; a test never sleeps
a fixed time in the hope that something has happened."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """``fn()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LoopbackServer:
    """``app`` served by a real Uvicorn on a free 127.0.0.1 port, in a thread; a context
    manager that returns once the server accepts connections."""

    def __init__(self, app: Any, *, lifespan: str = "on", name: str = "uvicorn") -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            ws="websockets-sansio",
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def __enter__(self) -> Any:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 20, what="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
