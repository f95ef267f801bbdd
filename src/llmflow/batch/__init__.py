"""Batch mode: a flow over the records of a dataset, every job a run (docs/batch.md).

datasets (read records, streamed) -> jobs (records x variants, ids) -> plan (the batch
record) -> runner (the driver; local executor) / ray_executor -> output (the result file);
progress and summary show it.
"""
