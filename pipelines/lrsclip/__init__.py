"""The `lrsclip` pipeline (see `pipeline.py` and `config.yaml`)."""
