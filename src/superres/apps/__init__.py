"""Thin shells over the Python API: the CLI, the web page and the reports."""
