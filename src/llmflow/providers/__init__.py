"""llmflow.providers."""
