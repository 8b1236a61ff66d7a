"""The `index` component."""
