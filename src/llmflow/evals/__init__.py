"""Evaluation and optimisation: metrics, scoring a batch's runs, evaluations in the store,
reports (table, JSON, JUnit, Markdown), SuperOptiX playbooks, and prompt optimisation
through DSPy (``llmflow eval``, ``llmflow optimize``; see docs/evals.md)."""
