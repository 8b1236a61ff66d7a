"""The `iebaker` pipeline (see `pipeline.py` and `config.yaml`)."""
