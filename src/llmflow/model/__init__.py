"""The flow model. Pure: specs, validation, composition; no runs, no I/O on import.

- ``spec``: :class:`~llmflow.model.spec.Flow` and every spec class (the public spelling);
  the data itself in ``step_specs`` (steps) and ``flow_spec`` (the flow's own keys);
  ``registry``: step kinds and Python step functions
- ``compose``: Hydra composition of config dirs and files, overrides, provenance;
  ``sourcemap``: where each value was written
- ``validate`` (``checks``: the passes, + ``references``, ``value_errors``): every problem
  at once, as ``diagnostics``
- ``graph``: the step graph and its Mermaid text; ``expressions``: the sandboxed
  template language
- ``loader`` (``reading``: text or file -> flow): name or path -> composed, validated flow
  with provenance; ``orchestra``, ``playbook``, ``flowrunner``, ``variants``: other formats
"""
