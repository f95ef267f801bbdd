"""The old home of the Orchestra facade (now :mod:`llmflow.sdk.orchestra`), kept because runs
recorded before the move name ``llmflow.orchestra:aggregate_answers`` as a step function,
and resuming or re-running one imports it from here. New code imports ``llmflow.Orchestra``."""

from llmflow.sdk.orchestra import Orchestra, aggregate_answers

__all__ = ["Orchestra", "aggregate_answers"]
