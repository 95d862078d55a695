"""Plotting: training histories and benchmark tables (embeddings: use ``sc.pl.*``)."""

from ._plots import history, metrics_table

__all__ = ["history", "metrics_table"]
