"""The `vqa` component."""
