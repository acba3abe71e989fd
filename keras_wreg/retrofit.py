r"""Attach a keras_wreg method to an existing Keras/Larq model in one call.

:func:`apply` returns a copy of a model in which every matching quantized layer is rebuilt from
its own config with new arguments (a regularizer, a quantizer, a constraint), the Keras way:
``keras.models.clone_model`` with a ``clone_function`` that calls ``layer.from_config``. The
weights are copied across by name, so the copy computes what the original computed (until the
new arguments change the forward pass, e.g. another kernel quantizer)::

    import keras_wreg as kw
    import larq as lq

    model = kw.apply(binarynet, kernel_regularizer=kw.WReg(),
                     kernel_constraint=lq.constraints.WeightClip(2.0))
"""

import re

from keras_wreg._compat import keras, lq
from keras_wreg._clone import copy_weights, leaf_layers, rebuild
from keras_wreg._introspect import is_quantized_layer
from keras_wreg._validation import check_model, validate_args

#: marker for "leave this argument as the layer has it"
KEEP = object()

def _layer_filter(layers):
    """A predicate ``layer -> bool`` from the ``layers`` argument of :func:`apply`."""
    if layers is None:
        return is_quantized_layer, None
    if callable(layers):
        return layers, None
    if isinstance(layers, str):
        try:
            pattern = re.compile(layers)
        except re.error as err:
            raise ValueError(f"`layers` is not a valid regex: {layers!r} ({err}).") from err
        return (lambda layer: pattern.fullmatch(layer.name) is not None), None
    if isinstance(layers, (list, tuple, set)) and all(isinstance(n, str) for n in layers):
        names = set(layers)
        return (lambda layer: layer.name in names), names
    raise TypeError("`layers` must be None, a callable `layer -> bool`, a regex string or a "
                    f"list of layer names, got {type(layers).__name__}.")


def _serialize(kind, value):
    """A fresh config value for one layer (every layer gets its own object)."""
    if value is None or isinstance(value, str):
        return value
    serialize = {"regularizer": keras.regularizers.serialize,
                 "constraint": keras.constraints.serialize,
                 "quantizer": lq.quantizers.serialize}[kind]
    if kind == "regularizer" and not isinstance(value, keras.regularizers.Regularizer):
        raise TypeError(f"`kernel_regularizer` must be a Keras regularizer, a name or None, "
                        f"got {type(value).__name__}.")
    if kind == "constraint" and not isinstance(value, keras.constraints.Constraint):
        raise TypeError(f"`kernel_constraint` must be a Keras constraint, a name or None, "
                        f"got {type(value).__name__}.")
    if kind == "quantizer" and not (isinstance(value, keras.layers.Layer) or callable(value)):
        raise TypeError(f"`kernel_quantizer` must be a Larq quantizer, a name or None, "
                        f"got {type(value).__name__}.")
    return serialize(value)


@validate_args(model=check_model)
def clone_layers(model, predicate, updates, missing_ok=False):
    """A copy of ``model`` where each layer with ``predicate(layer)`` is rebuilt from its config
    updated with ``updates`` (a dict of config values, or a function ``layer -> dict``); every
    other layer is rebuilt from its own config. Nested models are cloned recursively.

    The weights of the original are copied into the copy by variable name (new weights, such as
    a :class:`~keras_wreg.ClusterReg`'s centres, keep their initial values). The copy is not
    compiled.

    Args:
        model: a functional or ``Sequential`` tf-keras model.
        predicate: ``layer -> bool``.
        updates: dict merged into the matching layers' configs, or ``layer -> dict``.
        missing_ok: return ``model`` itself when no layer matches, instead of raising.

    Raises:
        TypeError: if ``model`` is not a tf-keras Model.
        ValueError: when no layer matches (unless ``missing_ok``).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a tf-keras Model, got {type(model).__name__}.")
    matched = []

    def rebuild_layer(layer):
        config = layer.get_config()
        if predicate(layer):
            config.update(updates(layer) if callable(updates) else updates)
            matched.append(layer.name)
        return layer.__class__.from_config(config)

    clone = rebuild(model, rebuild_layer)
    if not matched:
        if missing_ok:
            return model
        raise ValueError("No layer of `model` matches `layers`; nothing to apply.")
    copy_weights(model, clone, complete="source")  # new weights (ClusterReg centres) stay
    object.__setattr__(clone, "matched_layers", tuple(matched))  # not a tracked attribute
    return clone


@validate_args(model=check_model)
def apply(model, kernel_regularizer=KEEP, kernel_quantizer=KEEP, kernel_constraint=KEEP,
          input_quantizer=KEEP, layers=None):
    """A copy of ``model`` with a method attached to every matching quantized layer.

    The copy is made with ``keras.models.clone_model``: each matching layer is rebuilt with
    ``layer.from_config`` from its config updated with the given arguments, every other layer
    from its unchanged config; then all weights are copied over by name. The original model is
    not modified. An argument left at its default keeps what each layer has; ``None`` removes
    it (e.g. ``kernel_constraint=None``). Instances are serialized and rebuilt per layer, so
    layers never share a regularizer (a :class:`~keras_wreg.ClusterReg` gets its own centres).

    Example: adopt WReg on a Larq BinaryNet, with a clip wide enough for WReg's tail::

        model = kw.apply(binarynet, kernel_regularizer=kw.WReg(),
                         kernel_constraint=lq.constraints.WeightClip(2.0))

    Args:
        model: a tf-keras/Larq model (functional or ``Sequential``; nested models are handled).
        kernel_regularizer: Keras regularizer (instance, name) or None.
        kernel_quantizer: Larq quantizer (instance, name) or None.
        kernel_constraint: Keras constraint (instance, name) or None.
        input_quantizer: Larq quantizer for the layers' inputs (instance, name) or None.
        layers: which layers: None (default) = every Larq quantized layer that has a kernel
            quantizer; a callable ``layer -> bool``; a regex matched against the whole layer
            name; or a list of layer names (all must exist).

    Returns:
        The uncompiled copy; its ``matched_layers`` attribute lists the layers changed.

    Raises:
        TypeError: for a non-model ``model``, a bad ``layers`` or a wrong argument type.
        ValueError: if no layer matches, a listed layer name does not exist, or nothing is
            to be changed.
    """
    predicate, names = _layer_filter(layers)
    updates = {}
    for key, kind, value in (("kernel_regularizer", "regularizer", kernel_regularizer),
                             ("kernel_quantizer", "quantizer", kernel_quantizer),
                             ("kernel_constraint", "constraint", kernel_constraint),
                             ("input_quantizer", "quantizer", input_quantizer)):
        if value is not KEEP:
            _serialize(kind, value)  # type check once, with the argument's name
            updates[key] = value
    if not updates:
        raise ValueError("Pass at least one of `kernel_regularizer`, `kernel_quantizer`, "
                         "`kernel_constraint`, `input_quantizer`.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a tf-keras Model, got {type(model).__name__}.")
    if names is not None:
        missing = names - {layer.name for layer in leaf_layers(model)}
        if missing:
            raise ValueError(f"`layers` names {sorted(missing)} are not layers of the model.")

    def per_layer(layer):
        config = layer.get_config()
        out = {}
        for key, value in updates.items():
            kind = "regularizer" if "regularizer" in key else (
                "constraint" if "constraint" in key else "quantizer")
            if key not in config:
                raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no "
                                 f"`{key}` argument; narrow `layers`.")
            out[key] = _serialize(kind, value)
        return out

    return clone_layers(model, predicate, per_layer)


__all__ = ["apply", "clone_layers", "is_quantized_layer", "KEEP"]
