"""Runnable benchmarks: each compares a method against plain Larq in one process."""
