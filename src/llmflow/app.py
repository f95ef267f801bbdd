"""The old path of the composition root (now :mod:`llmflow.runtime.root`), kept so code
written against the earlier docs (``from llmflow.app import build_runtime``) keeps working.
New code imports ``from llmflow.runtime import build_runtime``."""

from llmflow.runtime.root import build_runtime, close_shared_runtimes, shared_runtime

__all__ = ["build_runtime", "close_shared_runtimes", "shared_runtime"]
