"""Image files in and out (every common format, 8/16-bit, alpha) and colour spaces."""
