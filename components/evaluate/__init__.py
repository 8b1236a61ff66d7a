"""The `evaluate` component."""
