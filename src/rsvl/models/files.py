"""The file names of a saved rsvl model folder (no heavy imports: the registry reads them too)."""

CONFIG_NAME = "open_clip_config.json"
"""The open_clip model config plus rsvl's own settings (``rsvl`` key)."""
WEIGHTS_NAME = "open_clip_model.safetensors"
"""The weights, as safetensors (never pickle)."""
MODEL_DIR_ARTIFACT = "model_dir"
"""The registered pyfunc's artifact that holds this folder (the gate downloads it without loading torch)."""
