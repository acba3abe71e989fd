r"""The alternating update as it was before it was made fast (issue 23): the reference the
fast implementation in ``keras_wreg/alternate.py`` is compared against (same math)."""

import time

from keras_wreg._introspect import latent
from keras_wreg._introspect import flat_layers
from keras_wreg._compat import keras, lq, tf
from keras_wreg._validation import check_bool, check_choice, check_int, check_positive
from keras_wreg.quantizers.hwgq import SCALED_QUANTIZERS
from keras_wreg._validation import check_model, data_or_arrays, validate_args

VARIANTS = ("A", "B")


def _sign(w):
    return tf.where(w >= 0, tf.ones_like(w), -tf.ones_like(w))  # sign(0) = +1


def _channel_axes(w):
    return list(range(w.shape.rank - 1))


@validate_args(model=check_model)
def binary_layers(model):
    """The layers of ``model`` (in forward order) whose kernel quantizer has per-channel scales
    (:class:`~keras_wreg.ScaledSign`): the layers :class:`AlternateUpdate` fine-tunes."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += binary_layers(layer)
        elif isinstance(getattr(layer, "kernel_quantizer", None), SCALED_QUANTIZERS) and \
                isinstance(layer, (keras.layers.Dense, lq.layers.QuantConv2D,
                                   lq.layers.QuantConv1D, lq.layers.QuantConv3D)):
            found.append(layer)
    return found


def latent_kernel(layer):
    """The float (latent) kernel variable of a Larq layer."""
    kernel = layer.kernel
    return latent(kernel)


def linear(layer, x, kernel):
    """The layer's linear map (conv or matmul, no bias) of ``x`` with an explicit ``kernel``."""
    if isinstance(layer, keras.layers.Dense):
        return tf.tensordot(x, kernel, axes=[[x.shape.rank - 1], [0]])
    return layer.convolution_op(x, kernel)


def _rescale_channels(variable, alpha_new):
    r"""Set :math:`\\mathrm{mean}|W_c|` to :math:`\\alpha_c` by rescaling each channel (signs kept;
    a negative :math:`\\alpha_c` flips the channel's signs)."""
    w = variable.read_value()
    alpha_old = tf.reduce_mean(tf.abs(w), axis=_channel_axes(w))
    ratio = tf.where(alpha_old > 0, alpha_new / tf.where(alpha_old > 0, alpha_old, 1.0), 1.0)
    variable.assign(w * ratio)


class ReferenceAlternateUpdate:
    r"""Layer-wise alternating-update fine-tuning of a trained scaled-binary model [REC].

    Zhang, Yan & Zhang (Computer Engineering 47(5), 2021) fine-tune a trained binary network
    (HWGQ activations, binary weights with a scaling factor) "layer by layer with alternating
    updates" and report ~10x faster training than training the binary network further. Only the
    abstract is public; the procedure below is the reconstruction of ``docs/methods.md``.

    For every layer with :class:`~keras_wreg.ScaledSign` weights, in forward order, all other
    layers frozen:

    **Variant A** (default, local reconstruction). Cache the layer's quantized input :math:`X`
    (the model's own, already fine-tuned, upstream layers) on ``num_batches`` batches and the
    target :math:`Y = X * W^{(0)}` (pre-BN output with the latent float kernel at the start).
    Then ``iterations`` times:

    1. closed-form scale step, with :math:`Z = X * \operatorname{sign}(W)`:
       :math:`\alpha_c \leftarrow \langle Y_c, Z_c\rangle / \langle Z_c, Z_c\rangle`, the least-
       squares optimum of :math:`\|Y_c - \alpha_c Z_c\|^2`, so it never increases the error;
    2. ``steps`` Adam steps (``learning_rate``) on
       :math:`\|Y - \alpha \odot (X * \operatorname{sign} W)\|^2 / \|Y\|^2` w.r.t. the latent
       :math:`W` (straight-through gradient).

    Since :class:`ScaledSign` computes :math:`\alpha_c = \mathrm{mean}|W_c|`, step 1 is applied
    by rescaling the latent channel :math:`W_c` (signs kept), so no extra state is stored. The
    per-channel scale change is then absorbed by refreshing the moving statistics of the BN
    layers between this layer and the next binary layer (``recalibrate_bn``), before the next
    layer's input is cached.

    **Variant B** (task loss). ``iterations`` rounds of two phases of ``steps`` steps each on the
    task data (labels needed; BN in inference mode): (i) the latent kernel of the layer with
    :math:`\alpha` frozen (each channel is rescaled back to its frozen :math:`\alpha_c` after
    every step); (ii) :math:`\alpha` (gradient :math:`\sum_{i\in c} \partial L/\partial Q_i
    \operatorname{sign} W_i`, kept :math:`\ge 10^{-6}`) and the trainable variables of the
    following BN layers, kernel signs frozen.

    :meth:`run` returns (and with ``verbose`` prints) one report per layer: what was done, the
    reconstruction error (variant A) or task loss (variant B) before/after, the fraction of
    kernel signs that flipped, and the wall time.

    Args:
        variant: ``"A"`` (default) or ``"B"``.
        iterations: alternations per layer (>= 1, default 3).
        steps: gradient steps per weight phase (>= 0, default 20).
        learning_rate: Adam learning rate of the latent weights (default 1e-3).
        alpha_learning_rate: Adam learning rate of :math:`\alpha` and BN (variant B, 1e-3).
        num_batches: batches of the data used per layer (default 8).
        recalibrate_bn: refresh the following BN statistics after each layer (default True for
            variant A; ignored by variant B, which keeps BN in inference mode).
        verbose: print the per-layer report.

    Raises:
        ValueError: for an unknown variant or a bad count/learning rate.

    """

    def __init__(self, variant="A", iterations=3, steps=20, learning_rate=1e-3,
                 alpha_learning_rate=1e-3, num_batches=8, recalibrate_bn=True, verbose=0):
        if not (isinstance(variant, str) and variant.upper() in VARIANTS):
            check_choice(variant, VARIANTS, "variant")
        self.variant = variant.upper()
        self.iterations = check_int(iterations, "iterations", low=1, high=10**6)
        self.steps = check_int(steps, "steps", low=0, high=10**7)
        self.learning_rate = check_positive(learning_rate, "learning_rate", high=10.0)
        self.alpha_learning_rate = check_positive(alpha_learning_rate, "alpha_learning_rate",
                                                  high=10.0)
        self.num_batches = check_int(num_batches, "num_batches", low=1, high=10**6)
        self.recalibrate_bn = check_bool(recalibrate_bn, "recalibrate_bn")
        self.verbose = check_int(verbose, "verbose", low=0, high=2)

    # -- configuration ---------------------------------------------------------------
    def get_config(self):
        return dict(variant=self.variant, iterations=self.iterations, steps=self.steps,
                    learning_rate=self.learning_rate,
                    alpha_learning_rate=self.alpha_learning_rate, num_batches=self.num_batches,
                    recalibrate_bn=self.recalibrate_bn, verbose=self.verbose)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- data --------------------------------------------------------------------------
    def _batches(self, data, labels=False):
        """Up to ``num_batches`` batches ``x`` (or ``(x, y)``) from a dataset or arrays."""
        if isinstance(data, tf.data.Dataset):
            out = []
            for item in data.take(self.num_batches):
                x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
                out.append((x, y) if labels else x)
            if not out:
                raise ValueError("`data` is empty.")
            if labels and out[0][1] is None:
                raise ValueError("variant B needs `data` with labels: (x, y) batches.")
            return out
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
            return self._batches(ds, labels)
        ds = tf.data.Dataset.from_tensor_slices(data).batch(64)
        if labels:
            raise ValueError("variant B needs `data` with labels: (x, y) or a dataset of (x, y).")
        return self._batches(ds, labels)

    @staticmethod
    def layer_inputs(model, layer, xs):
        """The quantized inputs of ``layer`` (after its ``input_quantizer``) on batches ``xs``."""
        sub = keras.Model(model.inputs, layer.input)
        out = []
        for x in xs:
            a = sub(x, training=False)
            if getattr(layer, "input_quantizer", None) is not None:
                a = layer.input_quantizer(a)
            out.append(tf.convert_to_tensor(a))
        return out

    # -- variant A pieces ------------------------------------------------------------
    @staticmethod
    def reconstruction_error(layer, xs, ys):
        r""":math:`\sum_b \|Y_b - Q(W) * X_b\|^2` with the layer's current quantized kernel."""
        q = layer.kernel_quantizer(latent_kernel(layer))
        return float(sum(tf.reduce_sum(tf.square(y - linear(layer, x, q)))
                         for x, y in zip(xs, ys)))

    @staticmethod
    def alpha_step(layer, xs, ys):
        r"""Closed-form :math:`\alpha_c = \langle Y_c, Z_c\rangle/\langle Z_c, Z_c\rangle`,
        :math:`Z = X * \operatorname{sign}(W)`, written into the latent kernel. Returns the
        new scales."""
        w = latent_kernel(layer)
        sign = _sign(w.read_value())
        num = 0.0
        den = 0.0
        for x, y in zip(xs, ys):
            z = linear(layer, x, sign)
            axes = _channel_axes(z)
            num += tf.reduce_sum(y * z, axis=axes)
            den += tf.reduce_sum(z * z, axis=axes)
        alpha_old = tf.reduce_mean(tf.abs(w.read_value()), axis=_channel_axes(w))
        alpha = tf.where(den > 0, num / tf.where(den > 0, den, 1.0), alpha_old)
        _rescale_channels(w, alpha)
        return alpha

    def _weight_steps(self, layer, xs, ys):
        w = latent_kernel(layer)
        optimizer = keras.optimizers.Adam(self.learning_rate)
        norms = [tf.reduce_sum(tf.square(y)) + 1e-12 for y in ys]

        @tf.function
        def step(x, y, norm):
            with tf.GradientTape() as tape:
                q = layer.kernel_quantizer(w)
                loss = tf.reduce_sum(tf.square(y - linear(layer, x, q))) / norm
            optimizer.apply_gradients([(tape.gradient(loss, w), w)])
            return loss

        for i in range(self.steps):
            b = i % len(xs)
            step(xs[b], ys[b], norms[b])

    @validate_args(model=check_model, data=data_or_arrays)
    def update_layer(self, model, layer, data):
        """Fine-tune ``layer`` only (variant A or B); every other variable is left as is.

        Returns:
            dict: the per-layer report (without BN recalibration).
        """
        start = time.perf_counter()
        w = latent_kernel(layer)
        sign_before = _sign(w.read_value())
        if self.variant == "A":
            report = self._update_a(model, layer, data)
        else:
            report = self._update_b(model, layer, data)
        flips = float(tf.reduce_mean(tf.cast(_sign(w.read_value()) != sign_before, tf.float32)))
        report.update(layer=layer.name, variant=self.variant, sign_flip_fraction=flips,
                      seconds=time.perf_counter() - start)
        return report

    def _update_a(self, model, layer, data):
        xs = self.layer_inputs(model, layer, self._batches(data))
        w0 = tf.identity(latent_kernel(layer).read_value())
        ys = [linear(layer, x, w0) for x in xs]
        errors = [self.reconstruction_error(layer, xs, ys)]
        after_alpha = []
        for _ in range(self.iterations):
            self.alpha_step(layer, xs, ys)
            after_alpha.append(self.reconstruction_error(layer, xs, ys))
            self._weight_steps(layer, xs, ys)
            errors.append(self.reconstruction_error(layer, xs, ys))
        ref = float(sum(tf.reduce_sum(tf.square(y)) for y in ys))
        return dict(action=f"A: {self.iterations} x (closed-form alpha + {self.steps} "
                           "latent-weight steps) on the reconstruction error",
                    error_before=errors[0] / ref, error_after=errors[-1] / ref,
                    error_after_alpha=[e / ref for e in after_alpha],
                    errors=[e / ref for e in errors])

    def _update_b(self, model, layer, data):
        batches = self._batches(data, labels=True)
        w = latent_kernel(layer)
        bn_vars = [v for bn in _following_bns(model, layer) for v in bn.trainable_variables]
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        w_opt = keras.optimizers.Adam(self.learning_rate)
        a_opt = keras.optimizers.Adam(self.alpha_learning_rate)
        alpha = tf.Variable(tf.reduce_mean(tf.abs(w), axis=_channel_axes(w)), trainable=False)

        def task_loss(x, y):
            return loss_fn(y, model(x, training=False))

        @tf.function
        def weight_step(x, y):
            with tf.GradientTape() as tape:
                loss = task_loss(x, y)
            w_opt.apply_gradients([(tape.gradient(loss, w), w)])
            _rescale_channels(w, alpha)  # alpha frozen
            return loss

        @tf.function
        def alpha_step(x, y):
            with tf.GradientTape() as tape:
                loss = task_loss(x, y)
            grads = tape.gradient(loss, [w] + bn_vars)
            g_alpha = tf.reduce_sum(grads[0] * _sign(w), axis=_channel_axes(w))
            pairs = [(g_alpha, alpha)] + [(g, v) for g, v in zip(grads[1:], bn_vars)
                                          if g is not None]
            a_opt.apply_gradients(pairs)
            alpha.assign(tf.maximum(alpha, 1e-6))
            _rescale_channels(w, alpha)  # signs frozen
            return loss

        def mean_loss():
            return float(sum(task_loss(x, y) for x, y in batches) / len(batches))

        before = mean_loss()
        for _ in range(self.iterations):
            for phase in (weight_step, alpha_step):
                for i in range(self.steps):
                    x, y = batches[i % len(batches)]
                    phase(x, y)
        return dict(action=f"B: {self.iterations} x ({self.steps} latent-weight steps with alpha "
                           f"frozen + {self.steps} alpha/BN steps with signs frozen) on the task "
                           "loss", loss_before=before, loss_after=mean_loss())

    # -- BN ----------------------------------------------------------------------------
    @validate_args(model=check_model, data=data_or_arrays)
    def recalibrate(self, model, layer, data):
        """Set the moving mean/variance of the BN layers between ``layer`` and the next binary
        layer to the exact batch statistics of their inputs on the data. Returns their names."""
        xs = self._batches(data)
        names = []
        for bn in _following_bns(model, layer):
            inputs = self.layer_inputs(model, bn, xs)
            axes = _channel_axes(inputs[0])
            count = sum(float(tf.reduce_prod(tf.gather(tf.shape(a), axes))) for a in inputs)
            total = sum(tf.reduce_sum(a, axis=axes) for a in inputs)
            mean = total / count
            var = sum(tf.reduce_sum(tf.square(a - mean), axis=axes) for a in inputs) / count
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(var)
            names.append(bn.name)
        return names

    @validate_args(model=check_model, data=data_or_arrays)
    def run(self, model, data):
        """Fine-tune every scaled-binary layer of ``model`` in forward order.

        Args:
            model: a trained Keras model with :class:`~keras_wreg.ScaledSign` layers.
            data: a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` batches (variant B needs
                labels), or arrays ``x`` / ``(x, y)``.

        Returns:
            list of per-layer report dicts (``layer``, ``action``, errors or losses,
            ``sign_flip_fraction``, ``bn_recalibrated``, ``seconds``).
        """
        layers = binary_layers(model)
        if not layers:
            raise ValueError("`model` has no layer with a ScaledSign kernel quantizer.")
        reports = []
        for layer in layers:
            report = self.update_layer(model, layer, data)
            report["bn_recalibrated"] = []
            if self.variant == "A" and self.recalibrate_bn:
                start = time.perf_counter()
                report["bn_recalibrated"] = self.recalibrate(model, layer, data)
                report["seconds"] += time.perf_counter() - start
            reports.append(report)
            if self.verbose:
                print(format_report([report], header=not reports[:-1]), flush=True)
        return reports


def _following_bns(model, layer):
    """BatchNormalization layers after ``layer`` and before the next binary layer."""
    flat = list(flat_layers(model))
    binaries = set(id(b) for b in binary_layers(model))
    start = next(i for i, lay in enumerate(flat) if lay is layer)
    found = []
    for lay in flat[start + 1:]:
        if id(lay) in binaries:
            break
        if isinstance(lay, keras.layers.BatchNormalization):
            found.append(lay)
    return found


def format_report(reports, header=True):
    """Markdown rows of :meth:`AlternateUpdate.run` reports."""
    lines = []
    if header:
        lines += ["| layer | action | before | after | signs flipped | BN refreshed | seconds |",
                  "|---|---|---:|---:|---:|---|---:|"]
    for r in reports:
        before = r.get("error_before", r.get("loss_before"))
        after = r.get("error_after", r.get("loss_after"))
        lines.append(f"| {r['layer']} | {r['action']} | {before:.4f} | {after:.4f} | "
                     f"{r['sign_flip_fraction']:.2%} | {', '.join(r.get('bn_recalibrated', []))}"
                     f" | {r['seconds']:.2f} |")
    return "\n".join(lines)


__all__ = ["AlternateUpdate", "binary_layers", "latent_kernel", "format_report", "VARIANTS"]
