"""llmflow-echo: an example plugin (see plugin.py)."""
