"""Method registry: ``recipes.get("wreg")`` gives the building blocks of a method.

Importing this package registers every method; a new method is one module with a
``@register_recipe`` class, imported here.
"""

from keras_wreg.recipes.base import (
    RECIPES, Recipe, add_method_flags, get, method_flag_params, method_flags, register_recipe)
from keras_wreg.recipes import binary  # noqa: F401,E402  (larq, wreg)
from keras_wreg.recipes import cluster  # noqa: F401,E402  (cluster)
from keras_wreg.recipes import fda  # noqa: F401,E402  (fda)
from keras_wreg.recipes import float as _float  # noqa: F401,E402  (float)
from keras_wreg.recipes import hwgq  # noqa: F401,E402  (hwgq)
from keras_wreg.recipes import ternary  # noqa: F401,E402  (ste_tern, ternary)

__all__ = ["Recipe", "RECIPES", "get", "register_recipe", "method_flags", "add_method_flags",
           "method_flag_params"]
