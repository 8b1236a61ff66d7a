"""The `train` component."""
