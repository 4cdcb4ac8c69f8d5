"""Bundled example tasks (each folder is a self-contained autoresearch task directory)."""
