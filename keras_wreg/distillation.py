r"""Knowledge distillation from a full-precision teacher, as a tf-keras ``train_step``.

The student's loss becomes (Hinton, Vinyals & Dean 2015; ReActNet's distributional loss is the
case :math:`w = 1`)

.. math::

    L = (1 - w)\,L_{task}(y, p_s) + w\,T^2\,\mathrm{KL}\big(\sigma(z_t/T)\,\|\,\sigma(z_s/T)\big)
        + \beta \sum_k \big\| \tfrac{a(F^k_s)}{\|a(F^k_s)\|} - \tfrac{a(F^k_t)}{\|a(F^k_t)\|}
        \big\|_2^2 + R(\theta)

with :math:`z_t, z_s` the teacher's and the student's logits, :math:`T` the temperature,
:math:`w` the weight, :math:`R` the student's regularization losses (WReg, ClusterReg, ...)
and, optionally, attention transfer (Zagoruyko & Komodakis 2017) on feature maps whose stages
line up: :math:`a(F) = \frac{1}{C}\sum_c F_c^2` flattened over space.

:class:`Distiller` does not wrap the student in another model (so callbacks, recipes and
``BackupAndRestore`` see the student itself): :meth:`Distiller.attach` replaces the student's
``train_step`` with the distilling one. The teacher runs in inference mode, is never trained,
and is reached only through that step's closure, so it adds no variable to the student's
checkpoints, ``.keras`` files or exports. Logits are read before the final softmax of models
ending in a softmax ``Activation`` (every keras_wreg builder); for other models the
log-probabilities are used (the same up to the clipping of zero probabilities).
"""

import os

from keras_wreg._compat import keras, register, tf
from keras_wreg._validation import (
    check_iterable, check_model, check_non_negative, check_positive, check_real, validate_args)

__all__ = ["Distiller", "distillation_loss", "attention_loss", "logit_outputs"]


def distillation_loss(teacher_logits, student_logits, temperature=4.0):
    r"""Per-example :math:`T^2\,\mathrm{KL}(\sigma(z_t/T)\,\|\,\sigma(z_s/T))` (shape ``(N,)``).

    Args:
        teacher_logits, student_logits: ``(N, classes)`` logits.
        temperature: :math:`T > 0`.
    """
    t = tf.cast(temperature, tf.float32)
    zt = tf.cast(teacher_logits, tf.float32) / t
    zs = tf.cast(student_logits, tf.float32) / t
    log_pt = tf.nn.log_softmax(zt, axis=-1)
    log_ps = tf.nn.log_softmax(zs, axis=-1)
    return t * t * tf.reduce_sum(tf.exp(log_pt) * (log_pt - log_ps), axis=-1)


def _attention(feature):
    a = tf.reduce_mean(tf.square(tf.cast(feature, tf.float32)), axis=-1)
    a = tf.reshape(a, [tf.shape(a)[0], -1])
    return tf.math.l2_normalize(a, axis=-1)


def attention_loss(teacher_features, student_features):
    r"""Per-example :math:`\sum_k \|\hat a(F^k_s) - \hat a(F^k_t)\|_2^2` over paired feature
    maps (``(N, H, W, C)``, the same ``H, W`` per pair; channels may differ)."""
    total = 0.0
    for ft, fs in zip(teacher_features, student_features):
        total += tf.reduce_sum(tf.square(_attention(fs) - _attention(ft)), axis=-1)
    return total


@validate_args(model=check_model)
def logit_outputs(model):
    """``(logits tensor, from_softmax)``: the input of a final softmax ``Activation``/``Softmax``
    layer, else the model's output (treated as probabilities if its last layer applies a
    softmax, as logits otherwise)."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation)
            and getattr(activation, "__name__", "") == "softmax"):
        return last.input, False
    return model.outputs[0], getattr(activation, "__name__", "") == "softmax"


def _name_pair(pair, argname):
    if isinstance(pair, str) or len(check_iterable(pair, argname, item_types=str,
                                                   item_name="layer name")) != 2:
        raise ValueError(f"`{argname}` must be a (student layer, teacher layer) pair of names, "
                         f"got {pair!r}.")
    return tuple(pair)


def _stage_outputs(model, spec):
    if spec == "auto":
        return [layer.output for layer in model.layers
                if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))]
    return [model.get_layer(name).output for name in spec]


@register
class Distiller:
    r"""Distil a teacher into a student's ``fit``: see the module docstring for the loss.

    Like Keras' wrapper layers, :meth:`get_config` holds the teacher's architecture, not its
    weights: :meth:`from_config` rebuilds an untrained teacher unless the teacher was given as a
    ``.keras`` path, which the config keeps (then the trained teacher is reloaded).

    Example:
        ```python
        teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        student = keras.Sequential([keras.Input((4,)), lq.layers.QuantDense(3, kernel_quantizer="ste_sign",
                                                                   kernel_constraint="weight_clip")])
        student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        kw.Distiller(teacher, weight=0.5, temperature=4.0).attach(student)
        student.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
        ```

    Args:
        teacher: a tf-keras model, or a path to a ``.keras`` file; its input and output shapes
            must match the student's. Frozen and run with ``training=False``.
        weight: :math:`w \in [0, 1]`, the share of the distillation term (0: the task loss
            alone, the student trains exactly as without a teacher).
        temperature: :math:`T > 0`.
        feature_weight: :math:`\beta \ge 0` of the attention-transfer term (0: off).
        feature_layers: ``"auto"`` (the outputs of the pooling layers of each model, in order:
            the stages of VGG-small) or ``[(student_layer, teacher_layer), ...]`` names.

    Raises:
        ValueError: for a weight outside [0, 1], a non-positive temperature, a negative feature
            weight, a teacher whose input or output shape differs from the student's, or
            feature maps that do not pair up.
    """

    def __init__(self, teacher, weight=0.5, temperature=4.0, feature_weight=0.0,
                 feature_layers="auto"):
        path = None
        if isinstance(teacher, (str, bytes)) or hasattr(teacher, "__fspath__"):
            path = os.fsdecode(teacher)
            teacher = keras.models.load_model(path, compile=False)
        self.teacher = check_model(teacher, "teacher")
        self.weight = check_real(weight, "weight", low=0.0, high=1.0)
        self.temperature = check_positive(temperature, "temperature", high=1e3)
        self.feature_weight = check_non_negative(feature_weight, "feature_weight")
        if not (isinstance(feature_layers, str) and feature_layers == "auto"):
            if isinstance(feature_layers, str):
                raise ValueError("`feature_layers` must be 'auto' or (student layer, teacher "
                                 f"layer) name pairs, got {feature_layers!r}.")
            feature_layers = [tuple(p) for p in check_iterable(
                feature_layers, "feature_layers", item_check=_name_pair, item_name="name pair")]
        self.feature_layers = feature_layers
        self.teacher.trainable = False
        self._teacher_path = path

    def get_config(self):
        teacher = (self._teacher_path if self._teacher_path is not None
                   else keras.saving.serialize_keras_object(self.teacher))
        return {"teacher": teacher, "weight": self.weight, "temperature": self.temperature,
                "feature_weight": self.feature_weight,
                "feature_layers": self.feature_layers if self.feature_layers == "auto"
                else [list(p) for p in self.feature_layers]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        teacher = config.pop("teacher", None)
        if isinstance(teacher, dict):
            teacher = keras.saving.deserialize_keras_object(teacher)
        return cls(teacher, **config)

    # ------------------------------------------------------------------ checks
    def check_student(self, student):
        """``ValueError`` when the teacher cannot teach ``student`` (shapes)."""
        check_model(student, "student")
        s_in, t_in = tuple(student.input_shape[1:]), tuple(self.teacher.input_shape[1:])
        if s_in != t_in:
            raise ValueError(f"The teacher's input shape {t_in} differs from the student's "
                             f"{s_in}.")
        s_out, t_out = tuple(student.output_shape[1:]), tuple(self.teacher.output_shape[1:])
        if s_out != t_out:
            raise ValueError(f"The teacher's output shape {t_out} (classes) differs from the "
                             f"student's {s_out}.")

    def _features(self, student):
        if not self.feature_weight:
            return [], []
        if self.feature_layers == "auto":
            fs, ft = _stage_outputs(student, "auto"), _stage_outputs(self.teacher, "auto")
        else:
            fs = _stage_outputs(student, [s for s, _ in self.feature_layers])
            ft = _stage_outputs(self.teacher, [t for _, t in self.feature_layers])
        if not fs or len(fs) != len(ft):
            raise ValueError(f"Feature matching needs stages that pair up: the student has "
                             f"{len(fs)}, the teacher {len(ft)}.")
        for a, b in zip(fs, ft):
            if tuple(a.shape[1:-1]) != tuple(b.shape[1:-1]):
                raise ValueError(f"Paired feature maps differ in spatial shape: student "
                                 f"{tuple(a.shape)} vs teacher {tuple(b.shape)}.")
        return fs, ft

    # ------------------------------------------------------------------ attach
    def attach(self, student):
        """Make ``student.fit`` distil (its ``train_step`` is replaced); returns ``student``.

        Call it before or after ``compile``; :meth:`detach` restores the plain step.
        """
        self.check_student(student)
        s_logits, s_soft = logit_outputs(student)
        t_logits, t_soft = logit_outputs(self.teacher)
        fs, ft = self._features(student)
        student_heads = keras.Model(student.inputs, [s_logits, student.outputs[0], *fs])
        teacher_heads = keras.Model(self.teacher.inputs, [t_logits, *ft])
        weight, temperature, beta = self.weight, self.temperature, self.feature_weight

        def logits(z, from_softmax):
            z = tf.cast(z, tf.float32)
            return tf.math.log(tf.clip_by_value(z, 1e-30, 1.0)) if from_softmax else z

        def train_step(data):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            teacher_out = teacher_heads(x, training=False)
            teacher_out = teacher_out if isinstance(teacher_out, list) else [teacher_out]
            zt = tf.stop_gradient(logits(teacher_out[0], t_soft))
            with tf.GradientTape() as tape:
                out = student_heads(x, training=True)
                zs, y_pred, feats = out[0], out[1], out[2:]
                task = student.compiled_loss(y, y_pred, sample_weight)
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                kd = tf.reduce_mean(distillation_loss(zt, logits(zs, s_soft), temperature))
                kd = kd / replicas
                loss = (1.0 - weight) * task + weight * kd
                if beta:
                    at = tf.reduce_mean(attention_loss(
                        [tf.stop_gradient(f) for f in teacher_out[1:]], feats))
                    loss = loss + beta * at / replicas
                if student.losses:
                    loss = loss + tf.add_n(student.losses)
            student.optimizer.minimize(loss, student.trainable_variables, tape=tape)
            logs = student.compute_metrics(x, y, y_pred, sample_weight)
            return {**logs, "distill_loss": kd * replicas}

        student.train_step = train_step
        student.train_function = None
        return student

    @staticmethod
    def detach(student):
        """Give ``student`` back its own ``train_step``."""
        if "train_step" in student.__dict__:
            del student.__dict__["train_step"]
            student.train_function = None
        return student
