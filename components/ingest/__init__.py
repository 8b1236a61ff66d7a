"""The `ingest` component."""
