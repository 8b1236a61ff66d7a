"""Exceptions that carry enough context for a user to fix their input without reading code."""

from __future__ import annotations


class RsvlError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RsvlError):
    """A configuration file is missing, unparsable or breaks a rule of its schema."""


class DataError(RsvlError):
    """Input data breaks a rule; the message names the file or row and the rule."""


class SchemaVersionError(DataError):
    """A manifest was written by a newer schema version than this package can read."""


class UnsafeArchiveError(DataError):
    """An archive member would be written outside the extraction directory."""


class ValidationFailed(DataError):
    """The share of bad rows in a dataset passed the configured limit."""


class ModelError(RsvlError):
    """A model architecture, its weights or a saved model cannot be built or loaded."""


class WeightsNotCachedError(ModelError):
    """Pretrained weights are not in the local cache and the Hugging Face Hub is offline."""


class TrainError(RsvlError):
    """A training run failed past its retry budget; the message names the run and how to resume."""


class TrackingStoreUnavailable(RsvlError):
    """The MLflow tracking store stayed locked or unreachable past the retry policy (:mod:`rsvl.mlflow_store`)."""


class PayloadTooLarge(DataError):
    """A request's image is over a byte or pixel limit of serving (:mod:`rsvl.model_registry.image_input`)."""
