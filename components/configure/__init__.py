"""The `configure` component."""
