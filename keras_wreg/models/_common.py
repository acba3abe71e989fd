"""Argument checks and helpers shared by the model builders."""

from keras_wreg._compat import keras


def check_builder_args(input_shape, num_classes, width):
    """ValueError naming the argument unless the three builder arguments make sense."""
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"`width` must be a positive int, got {width!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")


def regularizer_factory(kernel_regularizer):
    """A zero-argument function giving each layer its own regularizer.

    A regularizer *instance* is copied through its config (layers must not share one, e.g.
    ClusterReg owns per-layer centres); a callable is called once per layer; None gives None.
    """
    def make():
        if kernel_regularizer is None:
            return None
        if isinstance(kernel_regularizer, keras.regularizers.Regularizer):
            return kernel_regularizer.__class__.from_config(kernel_regularizer.get_config())
        return kernel_regularizer()

    return make


__all__ = ["check_builder_args", "regularizer_factory"]
