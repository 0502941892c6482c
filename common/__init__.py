"""Shared helpers: repository paths and the user-facing error type."""
