"""Keras layers of the keras_wreg methods."""

__all__ = []
