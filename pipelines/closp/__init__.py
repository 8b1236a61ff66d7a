"""The `closp` pipeline (see `pipeline.py` and `config.yaml`)."""
