"""The full-precision twin of any model: the float reference, and the teacher for distillation
(``keras-wreg train --method float``, then ``keras-wreg train --teacher <run>/model.keras``)."""

from keras_wreg import models
from keras_wreg.recipes.base import Recipe, register_recipe

#: model -> its float twin (the same convolutions, ReLU activations)
TWINS = {"vgg_small": "vgg_small_fp", "vgg_small_hwgq": "vgg_small_fp",
         "resnet18": "resnet18_fp"}


@register_recipe
class FloatRecipe(Recipe):
    """Full-precision weights and activations, Adam with a cosine decay; nothing quantized.

    ``build_model("vgg_small", ...)`` builds the model's float twin (:data:`TWINS`:
    ``vgg_small_fp``, ``resnet18_fp``, the same convolutions with ReLU activations, as every
    suite's float reference); any other model is built with its quantizers and constraints
    removed.
    """

    name = "float"
    description = "full-precision twin of the model (the float reference; a teacher for --teacher)"
    quantizes = False
    defaults = {"learning_rate": 1e-3}

    def build_model(self, model_name, input_shape, num_classes, params, **model_kwargs):
        twin = TWINS.get(model_name, model_name)
        if twin.endswith("_fp"):
            return models.build(twin, input_shape, num_classes, **model_kwargs)
        return models.build(model_name, input_shape, num_classes, kernel_quantizer=None,
                            input_quantizer=None, kernel_constraint=None, **model_kwargs)


__all__ = ["FloatRecipe", "TWINS"]
