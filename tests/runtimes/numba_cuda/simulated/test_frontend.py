"""The Keras frontend, unchanged, on backend="numba-cuda": tiny models fit, train on batches,
predict, save and hand back their weights as their twins on the reference backend do.

The weights live on the device and come home only when the host reads them (Variable.value,
get_weights, the optimizer's state, save: kiln.runtimes.residency); host writes (set_weights,
assign) reach the device at the next call, also when they restore values the device has
moved away from, and a second model sharing the layers sees what the first one trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models, optimizers

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _data():  # noqa: ANN202
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 9)).astype(np.float32)
    return x, np.argmax(x @ rng.standard_normal((9, 3)), axis=1)


def _build(backend: str) -> models.Sequential:
    # A first kernel of 9x8 = 72 weights: more than the executable compares by itself.
    model = models.Sequential([layers.Input((9,)), layers.Dense(8, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


def _twins() -> tuple[models.Sequential, models.Sequential]:
    ref, gpu = _build("reference"), _build("numba-cuda")
    gpu.set_weights(ref.get_weights())
    return ref, gpu


def _assert_same_weights(gpu: models.Model, ref: models.Model) -> None:
    for got, expected in zip(gpu.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, **TOL)


@pytest.fixture(scope="module")
def fitted():  # noqa: ANN201
    ref, gpu = _twins()
    x, y = _data()
    logs = [m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
            for m in (ref, gpu)]
    return ref, gpu, logs


def test_get_weights_after_fit_match_the_reference_backend(fitted) -> None:  # noqa: ANN001
    ref, gpu, _ = fitted
    _assert_same_weights(gpu, ref)


def test_fit_and_predict_match_the_reference_backend(fitted) -> None:  # noqa: ANN001
    ref, gpu, (ref_logs, gpu_logs) = fitted
    assert sorted(gpu_logs) == sorted(ref_logs)
    for key in ref_logs:
        np.testing.assert_allclose(gpu_logs[key], ref_logs[key], err_msg=key, **TOL)
    x, _ = _data()
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


def test_set_weights_reach_the_device(fitted) -> None:  # noqa: ANN001
    ref, gpu, _ = fitted
    x, _ = _data()
    gpu.predict(x, verbose=0)  # the executable of predict exists: set_weights must reach it
    doubled = [2 * w for w in ref.get_weights()]
    for model in (ref, gpu):
        model.set_weights(doubled)
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


def test_weights_trained_on_batches_come_home_when_read(tmp_path: Path) -> None:
    ref, gpu = _twins()
    x, y = _data()
    for _ in range(3):
        losses = [m.train_on_batch(x, y) for m in (ref, gpu)]  # loss and accuracy
        np.testing.assert_allclose(losses[1], losses[0], **TOL)
    exe = gpu._executable
    assert exe._stale  # nothing was read: the new weights are still only on the device
    kernel = gpu.layers[0].kernel
    np.testing.assert_allclose(kernel.value, ref.layers[0].kernel.value, **TOL)
    assert gpu.optimizer.iterations == ref.optimizer.iterations == 3
    _assert_same_weights(gpu, ref)
    gpu.train_on_batch(x, y)  # the device moves on again; save must bring it home
    ref.train_on_batch(x, y)
    gpu.save(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln", backend="reference")
    _assert_same_weights(loaded, ref)
    assert loaded.optimizer.iterations == 4


def test_restoring_weights_the_device_moved_away_from_reaches_it() -> None:
    """set_weights(w0) after training from w0: the host array still holds w0 (the device's
    newer values never came home) and the last value exchanged is w0 too, so comparing the
    two would find no write. The write brings the device's values home first."""
    ref, gpu = _twins()
    x, y = _data()
    start = ref.get_weights()
    for _ in range(2):
        for model in (ref, gpu):
            model.train_on_batch(x, y)
    for model in (ref, gpu):
        model.set_weights(start)
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)
    for model in (ref, gpu):
        model.layers[0].kernel.assign(np.ones((9, 8), np.float32))
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


def test_a_model_sharing_layers_sees_what_the_other_trained() -> None:
    def pair(backend: str) -> tuple[models.Model, models.Model]:
        whole = _build(backend)
        part = models.Sequential([layers.Input((9,)), whole.layers[0]])
        part.compile(optimizer="sgd", loss="mse", backend=backend)
        return whole, part

    (ref, ref_part), (gpu, gpu_part) = pair("reference"), pair("numba-cuda")
    gpu.set_weights(ref.get_weights())
    x, y = _data()
    for whole, part in ((ref, ref_part), (gpu, gpu_part)):
        part.predict(x, verbose=0)  # an executable holding the shared kernel exists
        for _ in range(2):
            whole.train_on_batch(x, y)
    np.testing.assert_allclose(gpu_part.predict(x, verbose=0), ref_part.predict(x, verbose=0),
                               **TOL)
    for _ in range(2):  # the part trains the shared layer; the whole sees it
        for part in (ref_part, gpu_part):
            part.train_on_batch(x, np.zeros((8, 8), np.float32))
    np.testing.assert_allclose(gpu.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


def test_shuffled_fit_prefetches_each_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """fit copies batch k+1 over on the executable's second stream before step k runs; the
    shuffled batches sit in two alternating buffers, so batch k is intact meanwhile. Same
    history and weights as the reference backend's, short last batch included."""
    from kiln.runtimes.numba_cuda import NumbaCudaExecutable
    from kiln.utils import set_random_seed

    prefetched = []
    real = NumbaCudaExecutable.prefetch

    def counting(self, entry, inputs):  # noqa: ANN001, ANN202
        prefetched.append(entry)
        return real(self, entry, inputs)

    monkeypatch.setattr(NumbaCudaExecutable, "prefetch", counting)
    ref, gpu = _twins()
    x, y = _data()
    histories = []
    for model in (ref, gpu):
        set_random_seed(5)
        histories.append(model.fit(x, y, batch_size=3, epochs=2, shuffle=True,
                                   verbose=0).history)
    assert prefetched == ["train_step"] * 6  # 3 batches (3, 3, 2) per epoch
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], err_msg=key, **TOL)
    _assert_same_weights(gpu, ref)


def test_time_distributed_layers_train_as_on_the_reference_backend() -> None:
    """A scan whose body is a convolution, an unrolled batch normalization (one call per
    step in training) and a dense layer over every step at once."""
    from tests.frontends.keras.steps import assert_trains_like_the_reference

    def build(backend: str) -> models.Model:
        seq = layers.Input((2, 4, 4, 1))
        y = layers.TimeDistributed(layers.Conv2D(2, 2, activation="relu"))(seq)
        y = layers.TimeDistributed(layers.BatchNormalization())(y)
        y = layers.TimeDistributed(layers.GlobalAveragePooling2D())(y)
        model = models.Model(seq, layers.TimeDistributed(layers.Dense(2))(y))
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
        return model

    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 4, 1)).astype(np.float32)
    y = rng.standard_normal((3, 2, 2)).astype(np.float32)
    assert_trains_like_the_reference(build, "numba-cuda", x, y, steps=2)


def test_augmentation_trains_as_on_the_reference_backend() -> None:
    from tests.frontends.keras.steps import assert_trains_like_the_reference
    from tests.frontends.keras.test_layers_preprocessing import AUGMENTED_DATA, augmented

    assert_trains_like_the_reference(augmented, "numba-cuda", *AUGMENTED_DATA, steps=2)


def test_batches_from_a_generator_and_a_pydataset_train_as_on_the_reference() -> None:
    """fit on a generator with steps_per_epoch and a PyDataset as validation data, then
    evaluate and predict on batches: the device keeps the state across the stream's steps."""
    from kiln.utils import PyDataset

    x, y = _data()

    def forever():
        while True:
            yield x[:5], y[:5]
            yield x[5:], y[5:]

    class Halves(PyDataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            return x[index * 4:(index + 1) * 4], y[index * 4:(index + 1) * 4]

    ref, gpu = _twins()
    histories = [m.fit(forever(), steps_per_epoch=3, epochs=2, validation_data=Halves(),
                       verbose=0).history for m in (ref, gpu)]
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], err_msg=key, **TOL)
    _assert_same_weights(gpu, ref)
    np.testing.assert_allclose(gpu.evaluate(Halves(), verbose=0),
                               ref.evaluate(Halves(), verbose=0), **TOL)
    np.testing.assert_allclose(gpu.predict(forever(), steps=2, verbose=0),
                               ref.predict(forever(), steps=2, verbose=0), **TOL)
