"""The blog service."""
