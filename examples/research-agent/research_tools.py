"""The research agent's Python tool, referenced in flow.yaml as `research_tools:word_count`
(a module next to the flow file is importable that way)."""


def word_count(text: str) -> int:
    """Count the words of a text.

    Args:
        text: the text to count
    """
    return len(text.split())
