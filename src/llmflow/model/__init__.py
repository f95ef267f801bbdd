"""llmflow.model."""
