"""The part every dense-as-1×1-convolution inference layer shares (LCE has no binary fully
connected kernel): argument checks, the ``(1, 1, d, units)`` kernel, the bias and activation."""

from keras_wreg._compat import keras


class DenseAsConvBase(keras.layers.Layer):
    """``units`` outputs of a rank-2 input computed by a 1×1 convolution (subclasses: ``call``)."""

    def __init__(self, units, use_bias=False, activation=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be an int >= 1, got {units!r}.")
        self.units = units
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        depth = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", shape=(1, 1, depth, self.units))
        self.bias = (self.add_weight("bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)
        super().build(input_shape)

    def _output(self, y):
        """Bias and activation on the ``(N, units)`` result."""
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "activation": keras.activations.serialize(self.activation)}
