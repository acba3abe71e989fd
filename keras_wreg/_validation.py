"""The one place where keras_wreg checks the arguments of its public objects.

Every check raises an error whose message names the argument and shows the value it got:

- a wrong *type* (a string for a number, a float for a count, a non-bool for a flag, a
  non-iterable where a list is wanted) raises :class:`ArgumentTypeError`, which is both a
  ``TypeError`` and a ``ValueError`` (so code that catches either keeps working);
- a wrong *value* (NaN, ±inf, out of range, absurdly large, unknown option) raises
  ``ValueError``.

Python's ``bool`` is an ``int`` subclass; it is never accepted as a number, and only ``bool``
(or ``numpy.bool_``) is accepted as a flag. NumPy scalars are accepted like Python numbers.
An integer argument (a bit width, a number of centres, a count) must be an integer *type*
(``int`` or a NumPy integer): ``2.0`` or ``1e4`` is rejected with :class:`ArgumentTypeError`,
never truncated or silently converted, whatever its value.
"""

import functools
import inspect
import math
from numbers import Integral, Real

import numpy as np

#: default upper bound of counts (steps, epochs, batches): beyond it a value is a typo
MAX_COUNT = 2**31 - 1
#: default upper bound of scale-like reals (strengths, temperatures, learning rates)
MAX_REAL = 1e6


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError that is also a ValueError)."""


def _show(value):
    """``repr`` of a value, shortened, with its type for non-obvious cases."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, (bool, str, type(None))) or type(value) in (int, float):
        return text
    return f"{text} (type {type(value).__name__})"


def _fail(argname, expected, value, error=ValueError):
    raise error(f"`{argname}` must be {expected}, got {_show(value)}.")


def _num(x):
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else f"{x:g}"


def _range_text(low, high, low_open, high_open):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {_num(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {_num(high)}")
    return " and ".join(parts)


def check_real(value, argname, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in the given range, returned as ``float``.

    Args:
        value: the argument.
        argname: its name, for the message.
        low, high: bounds (None: unbounded on that side; ±inf is never accepted).
        low_open, high_open: exclude the bound itself.
    """
    bounds = _range_text(low, high, low_open, high_open)
    expected = "a finite number" + (f" {bounds}" if bounds else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        _fail(argname, expected, value, ArgumentTypeError)
    value = float(value)
    if not math.isfinite(value):
        _fail(argname, expected, value)
    if low is not None and (value < low or (low_open and value == low)):
        _fail(argname, expected, value)
    if high is not None and (value > high or (high_open and value == high)):
        _fail(argname, expected, value)
    return value


def check_positive(value, argname, *, high=MAX_REAL):
    """A finite real > 0 (and <= ``high``)."""
    return check_real(value, argname, low=0.0, low_open=True, high=high)


def check_non_negative(value, argname, *, high=MAX_REAL):
    """A finite real >= 0 (and <= ``high``)."""
    return check_real(value, argname, low=0.0, high=high)


def check_int(value, argname, *, low=None, high=MAX_COUNT):
    """An integer (``int`` or a NumPy integer, not a float, not a bool) in ``[low, high]``,
    returned as ``int``."""
    bounds = _range_text(low, high, False, False)
    expected = "an int" + (f" {bounds}" if bounds else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        _fail(argname, expected, value, ArgumentTypeError)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(argname, expected, value)
    return value


def check_bool(value, argname):
    """A flag: ``True`` or ``False`` (``numpy.bool_`` too), returned as ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(argname, "True or False", value, ArgumentTypeError)
    return bool(value)


def check_choice(value, choices, argname):
    """One of ``choices`` (compared with ``==``, so str-enums work); returned unchanged.

    A bool matches only a bool choice (``True == 1`` in Python, but not here).
    """
    choices = tuple(choices)

    def matches(choice):
        if value is choice:
            return True
        if isinstance(value, (bool, np.bool_)) != isinstance(choice, (bool, np.bool_)):
            return False
        try:
            return bool(value == choice)
        except Exception:  # e.g. an array, whose == is elementwise
            return False

    if not any(matches(c) for c in choices):
        same_kind = any(isinstance(value, type(c)) for c in choices if c is not None)
        _fail(argname, "one of " + ", ".join(repr(c) for c in choices), value,
              ValueError if same_kind else ArgumentTypeError)
    return value


def check_str(value, argname, *, allow_empty=False):
    """A string (non-empty unless ``allow_empty``)."""
    if not isinstance(value, str):
        _fail(argname, "a string", value, ArgumentTypeError)
    if not value and not allow_empty:
        _fail(argname, "a non-empty string", value)
    return value


def check_optional(check, value, argname, *args, **kwargs):
    """``None`` passes through; anything else goes to ``check(value, argname, ...)``."""
    if value is None:
        return None
    return check(value, argname, *args, **kwargs)


def check_iterable(value, argname, *, item_check=None, item_types=None, item_name="item",
                   min_length=0):
    """A list built from an iterable (not a string, bytes or mapping) whose items pass.

    Args:
        item_check: ``f(item, name)`` returning the checked item, or None.
        item_types: a type (or tuple) every item must be an instance of, or None.
        item_name: how an item is described in the message.
        min_length: least number of items.
    """
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        _fail(argname, f"a list (an iterable) of {item_name}s", value, ArgumentTypeError)
    items = list(value)
    if len(items) < min_length:
        _fail(argname, f"a list of at least {min_length} {item_name}(s)", value)
    out = []
    for i, item in enumerate(items):
        if item_types is not None and not isinstance(item, item_types):
            _fail(f"{argname}[{i}]", f"a {item_name}", item, ArgumentTypeError)
        out.append(item_check(item, f"{argname}[{i}]") if item_check else item)
    return out


def check_shape(value, argname, *, rank=None):
    """A shape: an iterable of positive ints (``rank`` of them if given), as a tuple."""
    dims = check_iterable(value, argname, item_name="positive int")
    if rank is not None and len(dims) != rank:
        _fail(argname, f"a shape of {rank} positive ints", value)
    return tuple(check_int(d, f"{argname}[{i}]", low=1) for i, d in enumerate(dims))


def check_finite_array(array, argname):
    """A numeric numpy array without NaN or inf (returned as an array)."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        _fail(argname, "a numeric array", array, ArgumentTypeError)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].ravel()[0]
        raise ValueError(f"`{argname}` must hold finite numbers, got {bad!r} among them.")
    return array


def check_model(value, argname="model"):
    """A tf-keras ``Model`` (Larq's models are ones); an array, a path or a Keras 3 model is
    refused with :class:`ArgumentTypeError`."""
    from keras_wreg._compat import keras

    if not isinstance(value, keras.Model):
        _fail(argname, "a tf-keras Model (tf.keras.Model, as Larq builds)", value,
              ArgumentTypeError)
    return value


_DATASET = ("a tf.data.Dataset of (x, y) batches (arrays: "
            "tf.data.Dataset.from_tensor_slices((x, y)).batch(n))")


def _array_like(value):
    from keras_wreg._compat import tf

    if isinstance(value, (np.ndarray, np.generic, tf.Tensor, list)):
        return True
    return isinstance(value, tuple) and all(hasattr(v, "shape") for v in value)


def check_dataset(value, argname="dataset", *, arrays=False):
    """Data to iterate over: a ``tf.data.Dataset`` (or another iterable of batches such as a
    ``keras.utils.Sequence``); arrays, or an ``(x, y)`` tuple of arrays, only where ``arrays``
    (the functions that document them). Anything else raises :class:`ArgumentTypeError`."""
    from keras_wreg._compat import tf

    if isinstance(value, tf.data.Dataset):
        return value
    if _array_like(value):
        if arrays:
            return value
        _fail(argname, _DATASET, value, ArgumentTypeError)
    if isinstance(value, (str, bytes, dict, Real)) or not hasattr(value, "__iter__"):
        _fail(argname, _DATASET + (", or arrays" if arrays else ""), value, ArgumentTypeError)
    return value


def validate_args(**checks):
    """Decorator: run ``checks[name](value, name)`` on the named arguments of every call (the
    model and data arguments of the public functions), before the function body."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            try:
                bound = signature.bind_partial(*args, **kwargs)
            except TypeError:  # let the function report its own signature error
                return fn(*args, **kwargs)
            for name, check in checks.items():
                if name in bound.arguments:
                    check(bound.arguments[name], name)
            return fn(*args, **kwargs)

        return checked

    return decorate


def optional_data(value, argname):
    """``validation_data``-like: None, a dataset, or arrays/``(x, y)`` as Keras' ``fit``."""
    return None if value is None else check_dataset(value, argname, arrays=True)


def data_or_arrays(value, argname):
    """A dataset, arrays ``x`` or an ``(x, y)`` tuple of arrays."""
    return check_dataset(value, argname, arrays=True)


def labelled_data(value, argname):
    """A dataset of ``(x, y)`` batches or an ``(x, y)`` tuple of arrays (not a lone array)."""
    if _array_like(value) and not (isinstance(value, tuple) and len(value) == 2):
        _fail(argname, _DATASET + ", or an (x, y) tuple of arrays", value, ArgumentTypeError)
    return check_dataset(value, argname, arrays=True)


__all__ = [
    "ArgumentTypeError", "MAX_COUNT", "MAX_REAL", "check_real", "check_positive",
    "check_non_negative", "check_int", "check_bool", "check_choice", "check_str",
    "check_optional", "check_iterable", "check_shape", "check_finite_array", "check_model",
    "check_dataset", "validate_args", "optional_data", "data_or_arrays", "labelled_data",
]
