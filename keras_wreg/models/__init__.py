"""Network builders shared by every method (CLI, tuner and benchmarks build through here)."""

from keras_wreg._validation import check_choice
from keras_wreg.models.vgg import vgg_small, vgg_small_fp
from keras_wreg.models.hwgq import vgg_small_hwgq
from keras_wreg.models.compression import compression_ratio, compression_table
from keras_wreg.models.resnet import resnet18, resnet18_fp

#: name -> builder(input_shape, num_classes, **kwargs). Quantized builders accept
#: kernel_quantizer / input_quantizer / kernel_constraint / kernel_regularizer.
MODELS = {
    "vgg_small": vgg_small,
    "vgg_small_fp": vgg_small_fp,
    "vgg_small_hwgq": vgg_small_hwgq,
}

MODELS["resnet18"] = resnet18
MODELS["resnet18_fp"] = resnet18_fp


def build(name, input_shape, num_classes, **kwargs):
    """Build the network registered as ``name``."""
    check_choice(name, sorted(MODELS), "model")
    return MODELS[name](input_shape, num_classes, **kwargs)


__all__ = ["vgg_small", "vgg_small_fp", "build", "MODELS"]
__all__ += ["vgg_small_hwgq", "compression_ratio", "compression_table"]
__all__ += ["resnet18", "resnet18_fp"]
