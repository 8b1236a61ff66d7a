"""The `register` component."""
