"""The Python facades over the runtime, exported as ``llmflow.run``, ``llmflow.Runner``...

- ``runs.py``: run / run_sync / start, and RunHandle for a run started in the background
- ``runner.py``: Runner, one flow, agent or callable run again and again, with statistics
- ``orchestra.py``: Orchestra, pipeline, broadcast, conditional and parallel calls of agents
- ``result.py``: Run, the one result type all of them return

``sdk`` is the name DESIGN.md gives the layer: what a Python program calls.
"""
