"""rsvl: remote-sensing vision-language workflows (datasets, training, evaluation, promotion)."""

__version__ = "0.1.0"
