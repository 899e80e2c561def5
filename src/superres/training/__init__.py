"""Training: patch sampling (clean or real-world degraded) and the resumable trainer."""
