"""llmflow.batch."""
