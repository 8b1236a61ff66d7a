"""The `georsclip` pipeline (see `pipeline.py` and `config.yaml`)."""
