"""The `filter` component."""
