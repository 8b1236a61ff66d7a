"""open_clip model zoo: architectures by name, pretrained weights offline, multispectral inputs, saving.

The names below load on first use (PEP 562), so a light module of this package (``rsvl.models.files``)
imports without torch and open_clip: the registry and promote steps start in about a second.
"""

from importlib import import_module

_EXPORTS = {
    "build_model": "rsvl.models.factory",
    "list_architectures": "rsvl.models.architectures",
    "load_model": "rsvl.models.io",
    "save_model": "rsvl.models.io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import ``build_model``, ``list_architectures``, ``load_model`` or ``save_model`` when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rsvl.models' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
