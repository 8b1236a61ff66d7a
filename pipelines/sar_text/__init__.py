"""The `sar_text` pipeline (see `pipeline.py` and `config.yaml`)."""
