"""Small helpers shared across modules (no Keras-version knowledge here)."""

import json


def parse_value(text):
    """A command-line value: JSON if it parses (``1e-4``, ``2``, ``[1, 2]``), ``true``/``false``
    and ``none``/``null`` in any case, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items):
    """``["strength=1e-5", "region=both"]`` -> ``{"strength": 1e-05, "region": "both"}``."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"`--param` expects key=value, got {item!r}.")
        key, value = item.split("=", 1)
        params[key.strip()] = parse_value(value.strip())
    return params


__all__ = ["parse_value", "parse_params"]
