"""Argument checks and helpers shared by the model builders."""

from keras_wreg._compat import keras
from keras_wreg._validation import check_int, check_optional, check_shape, check_str

#: widest base width / most classes a builder accepts (beyond it, a typo)
MAX_WIDTH = 4096
MAX_CLASSES = 100_000


def check_builder_args(input_shape, num_classes, width, name=None):
    """ValueError/TypeError naming the argument unless the builder arguments make sense."""
    check_optional(check_str, name, "name")
    check_int(width, "width", low=1, high=MAX_WIDTH)
    check_int(num_classes, "num_classes", low=2, high=MAX_CLASSES)
    check_shape(input_shape, "input_shape", rank=3)


def check_layer_args(kernel_quantizer=None, input_quantizer=None, kernel_constraint=None):
    """ValueError naming the argument unless Larq/Keras can resolve the quantizers and the
    constraint (names, configs, classes, instances or None)."""
    from keras_wreg._compat import lq

    for argname, value, getter in (("kernel_quantizer", kernel_quantizer, lq.quantizers.get),
                                   ("input_quantizer", input_quantizer, lq.quantizers.get),
                                   ("kernel_constraint", kernel_constraint,
                                    keras.constraints.get)):
        if value is None or isinstance(value, keras.layers.Layer):
            continue
        try:
            getter(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"`{argname}` must be None or a name, config, class or instance "
                             f"Larq/Keras knows, got {value!r} "
                             f"({' '.join(str(err).split())[:100]}).") from None


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


def layer_quantizer(kernel_quantizer, regularizer):
    """The kernel quantizer of one layer: a template that needs the layer's regularizer (it has
    a ``for_regularizer`` method, e.g. :class:`keras_wreg.quantizers.ClusterQuantizer`) gets a
    copy bound to ``regularizer``; anything else is passed on unchanged."""
    bind = getattr(kernel_quantizer, "for_regularizer", None)
    if callable(bind) and regularizer is not None:
        return bind(regularizer)
    return kernel_quantizer


__all__ = ["check_builder_args", "regularizer_factory", "layer_quantizer"]
