"""``superres serve``: a web page and an HTTP API over the Python API (see :mod:`.server`)."""
