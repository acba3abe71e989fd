"""Model introspection: which layers quantize their kernels, and the weights keras_wreg acts on.

One place for the questions every floor asks of a model (the regularizers, the optimizer
wrappers, the callbacks, the export): the full-precision *latent* weight behind a Larq
``QuantizedVariable``, the layers of a nested model, whether a kernel quantizer is binary, and the
kernels of a model's quantized layers.
"""

from keras_wreg._compat import lq
from keras_wreg._validation import check_model, validate_args

#: ``(kernel, quantizer, regularizer)`` attribute names of Larq's kernel-carrying layers
KERNEL_ATTRS = (
    ("kernel", "kernel_quantizer", "kernel_regularizer"),
    ("depthwise_kernel", "depthwise_quantizer", "depthwise_regularizer"),
    ("pointwise_kernel", "pointwise_quantizer", "pointwise_regularizer"),
)

#: class names of the Larq/keras_wreg kernel quantizers whose values are {-a, +a}
BINARY_KERNEL_QUANTIZERS = (
    "SteSign",
    "ApproxSign",
    "SwishSign",
    "MagnitudeAwareSign",
    "ScaledSign",
)

_LARQ_BASES = tuple(
    getattr(lq.layers_base, name) for name in
    ("QuantizerBase", "QuantizerDepthwiseBase", "QuantizerSeparableBase")
    if hasattr(lq.layers_base, name)
)


#: Larq layer -> the Keras layer it equals when it quantizes nothing
PLAIN_KERAS = {"QuantConv2D": "Conv2D", "QuantDense": "Dense",
               "QuantDepthwiseConv2D": "DepthwiseConv2D", "QuantConv1D": "Conv1D",
               "QuantConv3D": "Conv3D", "QuantSeparableConv2D": "SeparableConv2D"}
#: the config keys a Larq layer has and its Keras counterpart does not
LARQ_KEYS = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer",
             "pad_values", "metrics")


def plain_keras_layer(cls, config):
    """``(class, config)`` of the Keras layer that computes what a Larq layer of class ``cls``
    with ``config`` computes when it quantizes nothing and pads with zeros; else the arguments
    unchanged."""
    plain = PLAIN_KERAS.get(cls.__name__)
    if plain and cls.__module__.startswith("larq") and not config.get("pad_values") and all(
            config.get(key) is None for key in LARQ_KEYS if key.endswith("_quantizer")):
        from keras_wreg._compat import keras

        return (getattr(keras.layers, plain),
                {key: value for key, value in config.items() if key not in LARQ_KEYS})
    return cls, config


def latent(variable):
    """The full-precision variable behind ``variable``: a Larq ``QuantizedVariable``'s
    ``latent_variable``, else ``variable`` itself."""
    return getattr(variable, "latent_variable", variable)


def flat_layers(model):
    """Every layer of ``model``, descending into nested models (depth first)."""
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and layer.layers:
            yield from flat_layers(layer)
        else:
            yield layer


def quantizer_name(quantizer):
    """A quantizer's name normalized for comparison (``"ste_sign"``, ``SteSign()`` -> ``"stesign"``);
    None for None."""
    if quantizer is None:
        return None
    if isinstance(quantizer, str):
        name = quantizer
    else:
        name = getattr(quantizer, "__name__", None) or type(quantizer).__name__
    return name.replace("_", "").lower()


def is_binary_quantizer(quantizer):
    """Whether a Larq quantizer (object, function or name) maps to {-a, +a}."""
    name = quantizer_name(quantizer)
    return name is not None and any(name == q.lower() for q in BINARY_KERNEL_QUANTIZERS)


def is_quantized_layer(layer):
    """Whether ``layer`` is a Larq quantized layer with a kernel quantizer (QuantConv2D,
    QuantDense, QuantDepthwiseConv2D, ... whose ``kernel_quantizer`` is set)."""
    if _LARQ_BASES and not isinstance(layer, _LARQ_BASES):
        return False
    config = layer.get_config()
    return any(config.get(quantizer) is not None for _, quantizer, _ in KERNEL_ATTRS)


@validate_args(model=check_model)
def binary_kernels(model):
    """The kernels of every Larq layer in ``model`` whose kernel quantizer is binary."""
    kernels = []
    for layer in flat_layers(model):
        if not is_binary_quantizer(getattr(layer, "kernel_quantizer", None)):
            continue
        for attr, _, _ in KERNEL_ATTRS:
            var = getattr(layer, attr, None)
            if var is not None:
                kernels.append(var)
    return kernels


@validate_args(model=check_model)
def latent_kernels(model):
    """``(layer name, latent kernel variable)`` of every layer with a kernel quantizer or a
    kernel regularizer (the weights keras_wreg's methods act on)."""
    out = []
    for layer in flat_layers(model):
        if getattr(layer, "kernel_quantizer", None) is None and \
                getattr(layer, "kernel_regularizer", None) is None:
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            out.append((layer.name, latent(kernel)))
    return out


__all__ = ["PLAIN_KERAS", "LARQ_KEYS", "plain_keras_layer", "KERNEL_ATTRS", "BINARY_KERNEL_QUANTIZERS", "latent", "flat_layers", "quantizer_name",
           "is_binary_quantizer", "is_quantized_layer", "binary_kernels", "latent_kernels"]
