"""llmflow.cli."""
