"""Evaluation: retrieval recall and (later) the other paper metrics."""
