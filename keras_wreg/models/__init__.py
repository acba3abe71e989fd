"""Network builders shared by every method (CLI, tuner and benchmarks build through here)."""

from keras_wreg.models.vgg import vgg_small, vgg_small_fp

#: name -> builder(input_shape, num_classes, **kwargs). Quantized builders accept
#: kernel_quantizer / input_quantizer / kernel_constraint / kernel_regularizer.
MODELS = {
    "vgg_small": vgg_small,
    "vgg_small_fp": vgg_small_fp,
}


def build(name, input_shape, num_classes, **kwargs):
    """Build the network registered as ``name``."""
    if name not in MODELS:
        raise ValueError(f"`model` must be one of {sorted(MODELS)}, got {name!r}.")
    return MODELS[name](input_shape, num_classes, **kwargs)


__all__ = ["vgg_small", "vgg_small_fp", "build", "MODELS"]
