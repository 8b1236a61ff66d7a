"""The `caption` component."""
