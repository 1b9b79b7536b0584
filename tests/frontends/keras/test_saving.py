"""model.save / kiln.models.load_model / model.export: a saved model predicts the same, goes on
training exactly as if it had never been saved (optimizer state, step count, random key), and
rebuilds from its config for every layer kiln has; ONNX members and exports open in a bare
onnxruntime session."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import onnxruntime as ort
import pytest

import kiln
from kiln import (
    callbacks,
    constraints,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from kiln.compiler.artifact import ArtifactError, read_artifact
from kiln.compiler.pass_manager import CompileOptions
from kiln.frontends.keras import initializers
from kiln.frontends.keras.saving import build_entry_points, deserialize_layer, serialize_layer
from kiln.ir import KilnValueError

RS = np.random.default_rng(0)
X = RS.standard_normal((24, 6)).astype(np.float32)
LABELS = RS.integers(0, 3, 24)


def _sequential(dropout: float = 0.0) -> models.Sequential:
    return models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dropout(dropout), layers.Dense(3, activation="softmax")])


def _functional() -> models.Model:
    """Two inputs, two outputs, a shared layer and a nested model."""
    a, b = layers.Input((6,), name="a"), layers.Input((4,), name="b")
    inner_in = layers.Input((8,), name="inner_in")
    inner = models.Model(inner_in, layers.Dense(5, activation="tanh", name="inner_dense")(
        inner_in), name="inner")
    shared = layers.Dense(8, activation="relu", name="shared")
    h = layers.add([shared(a), shared(layers.Dense(6, name="b_proj")(b))], name="sum")
    h = inner(h)
    reg = layers.Dense(2, name="reg")(h)
    cls = layers.Dense(3, activation="softmax", name="cls")(layers.concatenate([h, b]))
    return models.Model(inputs=[a, b], outputs={"reg": reg, "cls": cls}, name="two_heads")


def _functional_data() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    rs = np.random.default_rng(1)
    xs = [X, rs.standard_normal((24, 4)).astype(np.float32)]
    return xs, {"reg": rs.standard_normal((24, 2)).astype(np.float32), "cls": LABELS}


def _same_weights(a: models.Model, b: models.Model) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_sequential_round_trip_predicts_the_same(tmp_path) -> None:  # noqa: ANN001
    utils.set_random_seed(0)
    model = _sequential()
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend="reference")
    model.fit(X, LABELS, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.kiln"
    model.save(path)
    loaded = models.load_model(path)
    assert type(loaded) is models.Sequential and loaded.name == model.name
    assert [type(la).__name__ for la in loaded.layers] == ["Dense", "Dropout", "Dense"]
    assert loaded.input_names == model.input_names
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert loaded.evaluate(X, LABELS, verbose=0) == model.evaluate(X, LABELS, verbose=0)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    assert kiln.load_model is models.load_model


def test_functional_multi_io_round_trip(tmp_path) -> None:  # noqa: ANN001
    utils.set_random_seed(1)
    model = _functional()
    model.compile(optimizer="adam", loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.5, "cls": 1.0},
                  metrics={"cls": ["accuracy", metrics.SparseCategoricalAccuracy(name="sca")],
                           "reg": [metrics.MeanAbsoluteError()]}, backend="reference")
    xs, ys = _functional_data()
    model.fit(xs, ys, epochs=1, batch_size=12, verbose=0)
    model.save(tmp_path / "f.kiln")
    loaded = models.load_model(tmp_path / "f.kiln")
    assert loaded.input_names == ["a", "b"] and loaded.output_names == ["reg", "cls"]
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    want, got = model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)
    assert isinstance(got, dict) and sorted(got) == ["cls", "reg"]
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert loaded.evaluate(xs, ys, verbose=0, return_dict=True) == \
        model.evaluate(xs, ys, verbose=0, return_dict=True)
    assert loaded.get_layer("shared") is not None and len(loaded.get_layer("shared")._calls) == 2


@pytest.mark.parametrize("build, data", [
    (lambda: _sequential(dropout=0.3), lambda: (X, LABELS)),
    (_functional, _functional_data),
], ids=["sequential_dropout", "functional"])
def test_training_continues_exactly(build, data, tmp_path) -> None:  # noqa: ANN001
    """fit 1 epoch, save, load, fit 1 more == fit 2 epochs without saving: same weights,
    optimizer slots, step count and dropout masks (the random key is saved)."""
    def fresh() -> models.Model:
        utils.set_random_seed(7)
        model = build()
        loss = ("sparse_categorical_crossentropy" if isinstance(model, models.Sequential)
                else {"reg": "mse", "cls": "sparse_categorical_crossentropy"})
        model.compile(optimizer=optimizers.Adam(0.01), loss=loss, backend="reference")
        return model

    x, y = data()
    straight = fresh()
    straight.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    first = fresh()
    first.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    first.save(tmp_path / "ckpt.kiln")
    resumed = models.load_model(tmp_path / "ckpt.kiln")
    resumed.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    _same_weights(straight, resumed)
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 6
    # (layer names differ between the two models: compare the slots in their order)
    for want, got in zip(straight.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(got, want)


def test_training_continues_exactly_on_numba(tmp_path) -> None:  # noqa: ANN001
    def fresh() -> models.Model:
        utils.set_random_seed(3)
        model = _sequential()
        model.compile(optimizer=optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy",
                      backend="numba")
        return model

    straight = fresh()
    straight.fit(X, LABELS, epochs=2, batch_size=8, shuffle=False, verbose=0)
    first = fresh()
    first.fit(X, LABELS, epochs=1, batch_size=8, shuffle=False, verbose=0)
    first.save(tmp_path / "n.kiln")
    artifact = read_artifact(tmp_path / "n.kiln")
    assert artifact.backend == "numba" and sorted(artifact.kernel_source) == \
        ["predict", "test_step", "train_step"]
    resumed = models.load_model(tmp_path / "n.kiln")
    assert resumed._backend == "numba"
    resumed.fit(X, LABELS, epochs=1, batch_size=8, shuffle=False, verbose=0)
    _same_weights(straight, resumed)


def _small_graph():  # noqa: ANN202
    """tanh(x @ w + b) written in the IR: what GraphLayer wraps (an imported ONNX model, say)."""
    from kiln.ir import GraphBuilder, TensorType

    b = GraphBuilder("small")
    x = b.input("x", TensorType(("N", 5, 3), "float32"))
    w = b.state("w", TensorType((3, 2), "float32"))
    bias = b.state("b", TensorType((2,), "float32"))
    b.output(b.tanh(b.add(b.matmul(x, w), bias)), "y")
    return b.build()


def _layer_models() -> dict[str, models.Model]:
    """A small model per layer class, with non-default arguments, to round-trip configs."""
    seq = layers.Input((5, 3))
    img = layers.Input((6, 6, 2))
    ids = layers.Input((5,), dtype="int32")
    return {
        "recurrent": models.Model(seq, layers.concatenate([
            layers.LSTM(4, recurrent_initializer=initializers.Orthogonal(gain=0.5),
                        unit_forget_bias=False)(seq),
            layers.GRU(3, reset_after=False, go_backwards=True)(seq),
            layers.SimpleRNN(2, activation="relu")(seq),
            layers.Bidirectional(layers.SimpleRNN(2), merge_mode="sum")(seq)])),
        "conv": models.Model(img, layers.Dense(2)(layers.Flatten()(layers.AveragePooling2D(
            2, strides=1, padding="same")(layers.MaxPooling2D(2)(layers.Conv2D(
                3, 3, padding="same", activation="relu",
                kernel_initializer=initializers.RandomNormal(stddev=0.2))(img)))))),
        "pooling": models.Model(img, layers.multiply([
            layers.GlobalAveragePooling2D()(img), layers.GlobalMaxPooling2D()(img)])),
        "sequence": models.Model(seq, layers.concatenate([
            layers.GlobalMaxPooling1D()(layers.AveragePooling1D(2, strides=1, padding="same")(
                layers.MaxPooling1D(2)(layers.Conv1D(
                    4, 2, padding="causal", dilation_rate=2, activation="relu",
                    kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                    activity_regularizer="l2",
                    kernel_constraint=constraints.MaxNorm(1.5, axis=[0, 1]))(seq)))),
            layers.GlobalAveragePooling1D(keepdims=False)(seq),
            layers.GlobalAveragePooling1D()(layers.DepthwiseConv1D(2, depth_multiplier=2)(seq)),
            layers.GlobalAveragePooling1D()(layers.SeparableConv1D(
                3, 2, padding="same", pointwise_regularizer="l2")(seq))])),
        "activations": models.Model(seq, layers.concatenate([
            layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5)(seq),
            layers.LeakyReLU(0.2)(seq), layers.ELU(0.5)(seq), layers.Softmax(axis=[1, 2])(seq),
            layers.PReLU(alpha_initializer="ones", shared_axes=[1])(seq),
            layers.Subtract()([seq, layers.GaussianNoise(0.1)(seq)]),
            layers.Average()([seq, layers.GaussianDropout(0.2)(seq)]),
            layers.Maximum()([seq, layers.AlphaDropout(0.1)(seq)]),
            layers.Minimum()([seq, layers.SpatialDropout1D(0.2)(seq)]),
            layers.Dot(axes=2, normalize=True)([seq, seq])])),
        "reshaping": models.Model(img, layers.concatenate([
            layers.Flatten()(layers.Cropping2D(((1, 0), (0, 1)))(layers.ZeroPadding2D(1)(
                layers.UpSampling2D(2, interpolation="bilinear")(img)))),
            layers.Flatten()(layers.Conv2DTranspose(2, 3, strides=2, padding="same",
                                                    output_padding=1)(
                layers.SpatialDropout2D(0.3)(img))),
            layers.Flatten()(layers.Permute((2, 1))(layers.Cropping1D((1, 2))(
                layers.ZeroPadding1D((2, 0))(layers.UpSampling1D(2)(
                    layers.Conv1DTranspose(2, 2, strides=2)(layers.Reshape((12, 6))(img))))))),
            layers.Flatten()(layers.RepeatVector(2)(layers.GlobalAveragePooling2D()(img))),
            layers.Flatten()(layers.DepthwiseConv2D(2, strides=2, use_bias=False)(img)),
            layers.Flatten()(layers.SeparableConv2D(2, 3, depth_multiplier=2, padding="same",
                                                    activation="relu")(img))])),
        "attention": models.Model(seq, layers.concatenate([
            layers.MultiHeadAttention(2, 3, value_dim=2, use_gate=True, sliding_window=2)(
                seq, layers.EinsumDense("abc,cd->abd", (None, 4), bias_axes="d")(seq),
                key=seq, use_causal_mask=True),
            layers.EinsumDense("...c,cd->...d", 2, activation="relu")(seq),
            layers.Attention(use_scale=True, score_mode="concat")([seq, seq]),
            layers.AdditiveAttention()([seq, seq, seq], use_causal_mask=True)])),
        "embedding": models.Sequential([ids, layers.Embedding(10, 4),
                                        layers.Reshape((20,)),
                                        layers.BatchNormalization(momentum=0.5),
                                        layers.LayerNormalization(epsilon=0.1, center=False),
                                        layers.Activation("tanh")]),
        "masked": models.Sequential([ids, layers.Embedding(10, 4, mask_zero=True),
                                     layers.Masking(mask_value=0.5),
                                     layers.LSTM(3, return_sequences=True,
                                                 zero_output_for_mask=True),
                                     layers.GlobalAveragePooling1D()]),
        "preprocessing": models.Model(img, layers.concatenate([
            layers.Flatten()(layers.RandomBrightness(0.2, value_range=(1, 0))(
                layers.RandomContrast((0.2, 0.4))(layers.RandomTranslation(
                    0.1, 0.2, fill_mode="wrap")(layers.RandomZoom(
                        0.2, (-0.1, 0.3), interpolation="nearest")(layers.RandomRotation(
                            (-0.2, 0.1), fill_mode="constant", fill_value=2.0)(
                            layers.RandomFlip("vertical", seed=3)(
                                layers.Rescaling(0.5, offset=1.0)(img)))))))),
            layers.Flatten()(layers.Resizing(4, 5, interpolation="nearest",
                                             pad_to_aspect_ratio=True, fill_value=1.0)(
                layers.CenterCrop(4, 5)(img))),
            layers.Flatten()(layers.RandomCrop(4, 4)(layers.Normalization(
                axis=None, mean=2.0, variance=3.0, invert=True)(img))),
            layers.Flatten()(layers.Normalization(axis=(1, 3))(img))])),
        "graph": models.Model(seq, layers.GraphLayer(
            _small_graph(), {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)},
            name="in_ir")(seq)),
        "time_distributed": models.Sequential([
            layers.Input((3, 4, 4, 1)),
            layers.TimeDistributed(models.Sequential([layers.Conv2D(2, 2), layers.Flatten()])),
            layers.TimeDistributed(layers.Dense(2, activation="relu"), name="per_step")]),
    }


@pytest.mark.parametrize("name", ["recurrent", "conv", "pooling", "sequence", "activations",
                                  "reshaping", "attention", "embedding", "masked",
                                  "preprocessing", "time_distributed", "graph"])
def test_every_layer_rebuilds_from_its_config(name, tmp_path) -> None:  # noqa: ANN001
    utils.set_random_seed(2)
    model = _layer_models()[name]
    model.save(tmp_path / "m.kiln", backend="reference")
    loaded = models.load_model(tmp_path / "m.kiln")
    assert json.dumps(loaded.get_config()) == json.dumps(model.get_config())
    x = np.random.default_rng(0).standard_normal((3, *model.inputs[0].shape[1:]))
    x = (np.abs(x * 3) % 10).astype(model.inputs[0].dtype)
    # Both on the default backend's kernels: the same weights give the same numbers up to
    # float32 rounding (fused or vectorized loops may round the last bit differently).
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_layer_config_round_trip_for_every_layer_class() -> None:
    covered = {type(la).__name__ for m in _layer_models().values() for la in m.layers}
    covered |= {"InputLayer", "Dropout"}
    covered |= {"Lambda"}  # its function loads from custom_objects: tests/frontends/keras/test_ops
    covered |= {"TextVectorization"}  # on the host, in no model: test_layers_text
    public = {n for n in layers.__all__ if isinstance(getattr(layers, n), type)} - {"Layer"}
    assert public <= covered | {"Add", "Concatenate"} | {"Input"}, public - covered
    layer = layers.Dense(3, kernel_initializer=initializers.VarianceScaling(2.0, "fan_out"),
                         name="custom_init")
    again = deserialize_layer(serialize_layer(layer))
    assert again.get_config() == layer.get_config()
    assert again.get_config()["kernel_initializer"] == {
        "class_name": "VarianceScaling",
        "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}


def test_state_roles_and_parameter_count(tmp_path) -> None:  # noqa: ANN001
    model = models.Sequential([layers.Input((5,)), layers.Dense(3, name="d"),
                               layers.BatchNormalization(name="bn"),
                               layers.Dropout(0.5), layers.Dense(1, name="o")])
    model.compile(optimizer="adam", loss="mse", backend="reference")
    model.save(tmp_path / "m.kiln")
    art = read_artifact(tmp_path / "m.kiln")
    assert art.count_params() == model.count_params() == 18 + 12 + 4
    assert art.state_role("d.kernel") == "trainable"
    assert art.state_role("bn.moving_mean") == "non_trainable"
    assert art.state_role("optimizer.iterations") == "optimizer"
    assert art.state_role("adam.velocity/o.bias") == "optimizer"
    assert art.state_role("seed_generator.state") == "seed"


def test_load_without_compile_and_backend_override(tmp_path) -> None:  # noqa: ANN001
    model = _sequential()
    model.compile(loss="sparse_categorical_crossentropy", backend="reference")
    model.save(tmp_path / "m.kiln")
    plain = models.load_model(tmp_path / "m.kiln", compile=False)
    assert not plain.compiled and plain._backend == "reference"
    np.testing.assert_array_equal(plain.predict(X, verbose=0), model.predict(X, verbose=0))
    other = models.load_model(tmp_path / "m.kiln", backend="onnxruntime")
    assert other.compiled and other._backend == "onnxruntime"
    np.testing.assert_allclose(other.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(KilnValueError, match="Unknown backend 'tpu'"):
        models.load_model(tmp_path / "m.kiln", backend="tpu")


def test_entry_points_of_a_compiled_untrained_model() -> None:
    model = _sequential()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    graphs = build_entry_points(model)
    assert sorted(graphs) == ["predict", "test_step", "train_step"]
    y = graphs["train_step"].value("y").type
    assert y.dtype == "int32" and y.shape == ("N",)
    assert not model.optimizer.built  # building them for saving leaves the optimizer alone
    plain = _sequential()
    assert sorted(build_entry_points(plain)) == ["predict"]
    regression = _sequential()
    regression.compile(loss="mse")
    assert regression.compiled and build_entry_points(regression)["train_step"].value(
        "y").type.shape == ("N", 3)


def test_onnxruntime_artifact_members_run_in_a_bare_session(tmp_path) -> None:  # noqa: ANN001
    utils.set_random_seed(4)
    model = _sequential()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  backend="onnxruntime")
    model.save(tmp_path / "o.kiln")
    artifact = read_artifact(tmp_path / "o.kiln")
    assert sorted(artifact.onnx) == ["predict", "test_step", "train_step"]
    assert artifact.kernel_source == {}
    predict = ort.InferenceSession(artifact.onnx["predict"],
                                   providers=["CPUExecutionProvider"])
    entry = artifact.entries["predict"]
    feed = {entry.inputs[0].name: X, **{n: artifact.state[n] for n in entry.state}}
    (probs,) = predict.run(None, feed)
    np.testing.assert_allclose(probs, model.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    # the train step too: state in, new state out, as one plain ONNX model
    step = ort.InferenceSession(artifact.onnx["train_step"],
                               providers=["CPUExecutionProvider"])
    entry = artifact.entries["train_step"]
    inputs = {entry.inputs[0].name: X[:8], "y": LABELS[:8].astype(np.int32),
              **{n: artifact.state[n] for n in entry.state}}
    results = dict(zip([o.name for o in step.get_outputs()], step.run(None, inputs)))
    loss = model.train_on_batch(X[:8], LABELS[:8].astype(np.int32))
    np.testing.assert_allclose(results["loss"], loss, rtol=1e-5)
    kernel = model.layers[0].kernel
    np.testing.assert_allclose(results[f"{model.state_names()[id(kernel)]}.updated"],
                               kernel.numpy(), rtol=1e-5, atol=1e-6)


def test_export_onnx_opens_bare_and_matches_predict(tmp_path) -> None:  # noqa: ANN001
    utils.set_random_seed(5)
    model = _functional()
    xs, _ = _functional_data()
    model.export(tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"a": xs[0], "b": xs[1]})))
    want = model.predict(xs, verbose=0)
    for key in ("reg", "cls"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(KilnValueError, match=r"Unrecognized format='tf_saved_model'. "
                                             r"Expected one of: 'onnx'"):
        model.export(tmp_path / "m.pb", format="tf_saved_model")
    assert not (tmp_path / "m.pb").exists()


def test_save_refusals(tmp_path) -> None:  # noqa: ANN001
    model = _sequential()
    with pytest.raises(KilnValueError, match=r"must end in `.kiln`"):
        model.save(tmp_path / "model.keras")
    with pytest.raises(KilnValueError, match="has not been built"):
        models.Sequential([layers.Dense(2)]).save(tmp_path / "unbuilt.kiln")
    odd = models.Sequential([layers.Input((3,)), layers.Dense(2, activation=lambda b, v: v)])
    with pytest.raises(KilnValueError, match="a lambda as activation cannot be saved"):
        odd.save(tmp_path / "odd.kiln")
    wrapped = _sequential()
    wrapped.compile(loss=losses.LossFunctionWrapper(lambda b, t, p: b.sum(p, axes=-1)))
    with pytest.raises(KilnValueError, match="LossFunctionWrapper made from a function"):
        wrapped.save(tmp_path / "wrapped.kiln")
    assert list(tmp_path.iterdir()) == []


class ScaledMSE(losses.Loss):
    """A user's loss: scale * mean squared error."""

    def __init__(self, scale: float = 2.0, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.scale = scale

    def ir(self, b, y_true, y_pred):  # noqa: ANN001, ANN201
        return b.mul(b.mean(b.square(b.sub(y_pred, y_true)), axes=-1), self.scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def test_custom_objects(tmp_path) -> None:  # noqa: ANN001
    model = _sequential()
    model.compile(optimizer="sgd", loss=ScaledMSE(3.0), backend="reference")
    model.save(tmp_path / "c.kiln")
    with pytest.raises(KilnValueError, match=r"Unknown loss class 'ScaledMSE'.*custom_objects"):
        models.load_model(tmp_path / "c.kiln")
    loaded = models.load_model(tmp_path / "c.kiln", custom_objects={"ScaledMSE": ScaledMSE})
    assert isinstance(loaded.loss, ScaledMSE) and loaded.loss.scale == 3.0
    y = np.eye(3, dtype=np.float32)[LABELS]
    assert loaded.evaluate(X, y, verbose=0) == model.evaluate(X, y, verbose=0)


class Doubling(layers.Layer):
    def lower(self, b, x, ctx, **kwargs):  # noqa: ANN001, ANN201
        return b.mul(x, 2.0)


def test_a_custom_layer_inside_a_wrapper_loads_with_custom_objects(tmp_path) -> None:  # noqa: ANN001
    seq = layers.Input((3, 2))
    model = models.Model(seq, layers.TimeDistributed(Doubling(name="twice"))(seq))
    model.compile(loss="mse", backend="reference")
    model.save(tmp_path / "w.kiln")
    with pytest.raises(KilnValueError, match=r"Unknown layer class 'Doubling'.*custom_objects"):
        models.load_model(tmp_path / "w.kiln")
    loaded = models.load_model(tmp_path / "w.kiln", custom_objects={"Doubling": Doubling})
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), 2 * x)


def test_compile_options_and_dumps_go_with_save(tmp_path) -> None:  # noqa: ANN001
    model = _sequential()
    model.compile(loss="sparse_categorical_crossentropy", backend="reference")
    model.compile_options = CompileOptions(level=1, dump_dir=str(tmp_path / "dumps"),
                                           dump_after="cse")
    model.save(tmp_path / "m.kiln")
    artifact = read_artifact(tmp_path / "m.kiln")
    assert artifact.compile_options == {"level": 1}
    assert sorted(p.name for p in (tmp_path / "dumps").iterdir()) == \
        ["predict", "test_step", "train_step"]
    assert any("cse" in p.name for p in (tmp_path / "dumps" / "predict").iterdir())
    assert "fused" not in artifact.ir_text("train_step")  # -O1 fuses nothing
    assert artifact.graph("predict", "input") == build_entry_points(model)["predict"]
    assert models.load_model(tmp_path / "m.kiln").compile_options.level == 1


def test_model_checkpoint_writes_artifacts(tmp_path) -> None:  # noqa: ANN001
    model = _sequential()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  backend="reference")
    pattern = str(tmp_path / "ckpt-{epoch:02d}.kiln")
    model.fit(X, LABELS, epochs=2, batch_size=8, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(pattern)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-01.kiln", "ckpt-02.kiln"]
    assert models.load_model(tmp_path / "ckpt-01.kiln").optimizer.iterations == 3
    last = models.load_model(tmp_path / "ckpt-02.kiln")
    _same_weights(last, model)
    with pytest.raises(KilnValueError, match=r"must end in `.kiln`"):
        callbacks.ModelCheckpoint(str(tmp_path / "model.h5"))


def test_model_json_is_keras_shaped(tmp_path) -> None:  # noqa: ANN001
    model = _functional()
    model.compile(optimizer=optimizers.RMSprop(lr=0.002), loss="mse", backend="reference")
    model.save(tmp_path / "f.kiln")
    with zipfile.ZipFile(tmp_path / "f.kiln") as zf:
        config = json.loads(zf.read("model.json"))
    assert config["class_name"] == "Functional"
    assert config["compile_config"]["optimizer"] == {
        "module": "optimizers", "class_name": "RMSprop",
        "config": {"name": "rmsprop", "learning_rate": 0.002, "rho": 0.9, "momentum": 0.0,
                   "epsilon": 1e-07, "centered": False, "weight_decay": None, "clipnorm": None,
                   "clipvalue": None, "global_clipnorm": None}}
    calls = {c["layer"]: c for c in config["config"]["calls"]}
    assert calls["inner"]["inputs"] == [["sum", 0, 0]]
    shared = [c["inputs"] for c in config["config"]["calls"] if c["layer"] == "shared"]
    assert shared == [[["a", 0, 0]], [["b_proj", 0, 0]]]
    assert calls["sum"]["inputs"] == [["shared", 0, 0], ["shared", 1, 0]]
    inner = next(la for la in config["config"]["layers"] if la["config"]["name"] == "inner")
    assert inner["class_name"] == "Functional"
    with pytest.raises(ArtifactError):
        read_artifact(tmp_path / "missing.kiln")
