"""Utilities every stage uses that are not part of the model: atomic file writes (io), quiet logs, device
choice and stop signals (runtime)."""
