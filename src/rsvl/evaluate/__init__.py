"""Evaluation: retrieval recall, zero-shot classification, nDCG, captioning metrics and reports.

:func:`rsvl.evaluate.runner.evaluate_model` runs a model over a list of eval sets
(:class:`rsvl.config.evaluate.EvalSet`) and returns MLflow-safe metrics (``<eval set>.<metric>``),
the metrics that could not run with their reason, and the pictures and reports it wrote. Import
the module you need: :mod:`~rsvl.evaluate.retrieval` (the training loop's) loads no matplotlib.
"""
