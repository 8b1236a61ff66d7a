"""open_clip model zoo: architectures by name, pretrained weights offline, multispectral inputs, saving."""

from rsvl.models.factory import build_model
from rsvl.models.io import load_model, save_model
from rsvl.models.architectures import list_architectures

__all__ = ["build_model", "list_architectures", "load_model", "save_model"]
