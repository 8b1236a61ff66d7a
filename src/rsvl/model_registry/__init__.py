"""MLflow model registry: saved rsvl models as pyfunc versions with lineage, aliases and reuse."""

from rsvl.model_registry.lineage import Lineage
from rsvl.model_registry.register import (
    CANDIDATE,
    CHAMPION,
    Registration,
    download_model_dir,
    get_champion,
    register_model,
    registry_client,
    set_champion,
)

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "Lineage",
    "Registration",
    "download_model_dir",
    "get_champion",
    "register_model",
    "registry_client",
    "set_champion",
]
