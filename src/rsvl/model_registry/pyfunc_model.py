"""MLflow models-from-code entry point: MLflow runs this file to build the served model.

It is logged as the model's code (not pickled), so loading a registered version imports
:mod:`rsvl` from the consumer's environment; ``rsvl`` must be installed there.
"""

import mlflow

from rsvl.model_registry.embedder import RsvlEmbedder

mlflow.models.set_model(RsvlEmbedder())
