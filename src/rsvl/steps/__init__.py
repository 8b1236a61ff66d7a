"""The pipeline's steps as library calls: what the CLI commands and the KFP components run.

Each step takes the resolved :class:`rsvl.config.RunConfig` and plain paths or ids, and does the
step's whole job, MLflow bookkeeping included, so every entry point behaves the same.
"""
