"""The flow model. Pure: specs, validation, composition; no runs, no I/O on import.

- ``spec``: flow, step and agent specs (pydantic, ``kind``-discriminated); ``registry``:
  step kinds and Python step functions
- ``compose``: Hydra composition of config dirs and files, overrides, provenance;
  ``sourcemap``: where each value was written
- ``validate`` (+ ``references``, ``value_errors``): every problem at once, as
  ``diagnostics``
- ``graph``: the step graph and its Mermaid text; ``expressions``: the sandboxed
  template language
- ``loader``: name or path -> composed, validated flow; ``orchestra``: SuperOptiX files
"""
