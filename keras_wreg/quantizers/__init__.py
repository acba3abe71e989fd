"""Larq-compatible quantizers (each registered for tf-keras and Larq string lookup)."""

__all__ = []
