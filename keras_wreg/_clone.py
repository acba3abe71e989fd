"""Clone a model layer by layer and copy its weights across: the one helper behind
:func:`keras_wreg.apply`, :func:`keras_wreg.strip_clustering`, :func:`keras_wreg.strip_for_inference`
and the benchmarks' model copies.

A copy is made the Keras way, ``keras.models.clone_model`` with a ``clone_function`` that rebuilds
each layer from its (possibly edited) config, recursing into nested models. The weights are then
copied layer by layer, matched by their short name (``kernel``, ``gamma``, ...) and, when names do
not match one to one (auto-named sub-layers), by position.
"""

import numpy as np

from keras_wreg._compat import keras


def leaf_layers(model):
    """Leaf layers of ``model`` in a stable order, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def rebuild(model, layer_function=None):
    """A new, uncompiled ``model`` whose layers are ``layer_function(layer)`` (default: the layer
    rebuilt from its own config); nested models are rebuilt recursively. No weights are copied."""
    layer_function = layer_function or (lambda layer: layer.__class__.from_config(
        layer.get_config()))

    def clone_function(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone_function)
        return layer_function(layer)

    return keras.models.clone_model(model, clone_function=clone_function)


def short_name(name):
    """``"block/conv1/kernel:0"`` -> ``"kernel"``."""
    return name.split("/")[-1].split(":")[0]


def copy_layer_weights(source, target, values=None, skip=(), target_skip=(), complete="target",
                       reshape=False):
    """Assign ``target``'s weights from ``source`` (two layers); returns the number assigned.

    Args:
        source, target: layers.
        values: ``[(short name, array)]`` to copy instead of ``source``'s own weights (e.g. the
            quantized values a layer computes with).
        skip, target_skip: ids of variables of ``source`` / ``target`` to leave out.
        complete: ``"target"``: every weight of ``target`` must get a value (the copy computes
            what the source computes); ``"source"``: every value must land (the target may own
            new weights, which keep their initial values).
        reshape: reshape a value to the target's shape (e.g. a Dense kernel into a 1x1 conv).

    Raises:
        ValueError: when the weights cannot be matched, by name or by position.
    """
    if values is None:
        values = [(short_name(v.name), v) for v in source.weights if id(v) not in skip]
    targets = [v for v in target.weights if id(v) not in target_skip]
    names = [name for name, _ in values]
    wanted = [short_name(v.name) for v in targets]
    unique = len(set(names)) == len(names) and len(set(wanted)) == len(wanted)
    if complete == "target" and unique and set(wanted) <= set(names):
        lookup = dict(values)
        pairs = [(v, lookup[short_name(v.name)]) for v in targets]
    elif complete == "source" and unique and set(names) <= set(wanted):
        lookup = {short_name(v.name): v for v in targets}
        pairs = [(lookup[name], value) for name, value in values]
    elif len(values) == len(targets) or (complete == "source" and len(values) < len(targets)):
        pairs = list(zip(targets, (value for _, value in values)))
    else:
        raise ValueError(f"Cannot copy the weights {names} of layer {source.name!r} into the "
                         f"weights {wanted} of its copy {target.name!r}.")
    for variable, value in pairs:
        value = value.read_value() if hasattr(value, "read_value") else np.asarray(value)
        if reshape:
            value = np.reshape(value, tuple(variable.shape))
        elif tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"Cannot copy weight {variable.name!r} of layer {target.name!r}: "
                             f"shape {tuple(value.shape)} != {tuple(variable.shape)}.")
        variable.assign(value)
    return len(pairs)


def copy_weights(source, target, **kwargs):
    """:func:`copy_layer_weights` for every pair of leaf layers of two models of the same
    structure; returns the number of weights assigned."""
    return sum(copy_layer_weights(a, b, **kwargs)
               for a, b in zip(leaf_layers(source), leaf_layers(target)))


def clone(model, layer_function=None, **copy_kwargs):
    """:func:`rebuild` then :func:`copy_weights`: a new model that computes what ``model``
    computes (until ``layer_function`` changes a layer's forward pass)."""
    copy = rebuild(model, layer_function)
    copy_weights(model, copy, **copy_kwargs)
    return copy


__all__ = ["leaf_layers", "rebuild", "short_name", "copy_layer_weights", "copy_weights", "clone"]
