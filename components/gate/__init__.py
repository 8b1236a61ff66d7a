"""The `gate` component."""
