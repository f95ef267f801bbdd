"""The Python facades over the runtime, exported as ``llmflow.run``, ``llmflow.Runner``...

    runs.py       run / run_sync / start, RunHandle, the Run result
    runner.py     Runner: one flow, agent or callable, run again and again, with statistics
    orchestra.py  Orchestra: pipeline, broadcast, conditional and parallel calls of agents
"""
