"""fit / evaluate / predict on batches from a generator, an iterator, a PyDataset or a loader,
as Keras 3 takes them: each equals the same steps on arrays, epochs follow steps_per_epoch,
a PyDataset's hooks, shuffling and workers behave as Keras documents, and bad batches or
arguments raise errors that name the batch."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

from kiln import callbacks, layers, models, utils
from kiln.ir import KilnValueError

rs = np.random.default_rng(0)
X = rs.standard_normal((100, 6)).astype(np.float32)
Y = np.argmax(X @ rs.standard_normal((6, 3)), axis=1)
W = rs.uniform(0.5, 2.0, 100).astype(np.float32)


def _model(built: bool = True) -> models.Sequential:
    utils.set_random_seed(3)
    head = [layers.Input((6,))] if built else []
    model = models.Sequential([*head, layers.Dense(8, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _batches(size: int = 20, weights: bool = False):
    for i in range(0, len(X), size):
        yield (X[i:i + size], Y[i:i + size]) + ((W[i:i + size],) if weights else ())


class Batches(utils.PyDataset):
    """Five batches of 20; records the indices asked for and the epoch hooks."""

    def __init__(self, count: int | None = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.count = count
        self.asked: list[int] = []
        self.begins = self.ends = 0

    @property
    def num_batches(self) -> int | None:
        return self.count

    def __getitem__(self, index: int):
        self.asked.append(index)
        index %= 5
        return X[index * 20:(index + 1) * 20], Y[index * 20:(index + 1) * 20]

    def on_epoch_begin(self) -> None:
        self.begins += 1

    def on_epoch_end(self) -> None:
        self.ends += 1


def _array_fit(epochs: int = 3, **kwargs) -> tuple[list[float], list[np.ndarray]]:
    model = _model()
    history = model.fit(X, Y, batch_size=20, epochs=epochs, shuffle=False, verbose=0, **kwargs)
    return history.history["loss"], model.get_weights()


def _same(got: models.Model, history, expected) -> None:  # noqa: ANN001
    loss, weights = expected
    np.testing.assert_allclose(history.history["loss"], loss, rtol=1e-6)
    for a, b in zip(got.get_weights(), weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_generator_with_steps_per_epoch_equals_arrays() -> None:
    def forever():
        while True:
            yield from _batches()
    model = _model()
    history = model.fit(forever(), epochs=3, steps_per_epoch=5, verbose=0)
    _same(model, history, _array_fit())


def test_pydataset_equals_arrays_and_calls_its_epoch_hooks() -> None:
    data = Batches()
    model = _model()
    history = model.fit(data, epochs=3, shuffle=False, verbose=0)
    _same(model, history, _array_fit())
    assert data.asked[1:] == [0, 1, 2, 3, 4] * 3  # [0]: read to build the step
    assert data.begins == data.ends == 3


def test_pydataset_shuffle_visits_every_batch_per_epoch_and_is_seeded() -> None:
    orders = []
    for _ in range(2):
        data = Batches()
        _model().fit(data, epochs=3, verbose=0)  # shuffle=True, the default
        orders.append(data.asked[1:])
    assert orders[0] == orders[1]
    epochs = [orders[0][i:i + 5] for i in range(0, 15, 5)]
    assert all(sorted(e) == [0, 1, 2, 3, 4] for e in epochs)
    assert epochs != [[0, 1, 2, 3, 4]] * 3


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_pydataset_workers_give_the_batches_in_order(processes: bool) -> None:
    data = Batches(workers=3, use_multiprocessing=processes, max_queue_size=4)
    model = _model()
    history = model.fit(data, epochs=3, shuffle=False, verbose=0)
    _same(model, history, _array_fit())


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped() -> None:
    data = Batches()
    history = _model().fit(data, epochs=4, steps_per_epoch=2, shuffle=False, verbose=0)
    assert data.asked[1:] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert len(history.history["loss"]) == 4 and data.ends == 4


def test_infinite_pydataset_needs_steps_per_epoch() -> None:
    with pytest.raises(KilnValueError, match="infinite PyDataset.*steps_per_epoch"):
        _model().fit(Batches(count=None), verbose=0)
    data = Batches(count=None)
    _model().fit(data, epochs=2, steps_per_epoch=7, verbose=0)
    assert data.asked[1:] == list(range(14))  # [0] was read to build the step


def test_a_finite_generator_ends_training_when_it_runs_out() -> None:
    model = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(_batches(), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1
    np.testing.assert_allclose(history.history["loss"], _array_fit(epochs=1)[0], rtol=1e-6)
    with pytest.warns(UserWarning, match="ran out of data"):  # cut short inside an epoch
        history = _model().fit(_batches(), epochs=2, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(_batches(), epochs=1, verbose=0)  # one pass asked for: no warning


def test_iterators_and_reiterables_without_length() -> None:
    model = _model()
    history = model.fit(iter(list(_batches())), verbose=0)
    _same(model, history, _array_fit(epochs=1))

    class Loader:  # iterable again each epoch, of unknown length
        def __iter__(self):
            return _batches()
    model = _model()
    history = model.fit(Loader(), epochs=3, verbose=0)
    _same(model, history, _array_fit())


def test_sample_weights_and_class_weights_in_batches() -> None:
    model = _model()
    history = model.fit(_batches(weights=True), verbose=0)
    _same(model, history, _array_fit(epochs=1, sample_weight=W))
    table = {0: 0.5, 1: 2.0, 2: 1.0}
    model = _model()
    history = model.fit(Batches(), shuffle=False, class_weight=table, verbose=0)
    _same(model, history, _array_fit(epochs=1, class_weight=table))


def test_validation_data_as_a_generator_with_validation_steps() -> None:
    def forever():
        while True:
            yield from _batches()
    model = _model()
    history = model.fit(X, Y, batch_size=20, epochs=2, shuffle=False, verbose=0,
                        validation_data=forever(), validation_steps=5)
    other = _model()
    expected = other.fit(X, Y, batch_size=20, epochs=2, shuffle=False, verbose=0,
                         validation_data=(X, Y), validation_batch_size=20)
    for key in ("val_loss", "val_accuracy"):
        np.testing.assert_allclose(history.history[key], expected.history[key], rtol=1e-6)


def test_evaluate_and_predict_on_streams_and_with_steps() -> None:
    model = _model()
    model.fit(X, Y, verbose=0)
    expected = model.evaluate(X, Y, batch_size=20, verbose=0)
    np.testing.assert_allclose(model.evaluate(_batches(), verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(Batches(), verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(X, Y, steps=2, batch_size=20, verbose=0),
                               model.evaluate(X[:40], Y[:40], batch_size=20, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(X, Y, steps=3, verbose=0),  # Keras's batch size
                               model.evaluate(X, Y, batch_size=34, verbose=0), rtol=1e-6)
    full = model.predict(X, verbose=0)
    np.testing.assert_allclose(model.predict(_batches(), verbose=0), full, rtol=1e-6)
    np.testing.assert_allclose(model.predict(Batches(), steps=2, verbose=0), full[:40],
                               rtol=1e-6)
    xs = ((X[i:i + 30],) for i in range(0, 100, 30))  # (x,) tuples, a short last batch
    np.testing.assert_allclose(model.predict(xs, verbose=0), full, rtol=1e-6)
    np.testing.assert_allclose(model.predict(X, steps=4, batch_size=10, verbose=0), full[:40],
                               rtol=1e-6)


def test_arrays_with_steps_per_epoch_follow_keras_batch_size() -> None:
    model = _model()
    history = model.fit(X, Y, steps_per_epoch=5, epochs=2, shuffle=False, verbose=0)
    _same(model, history, _array_fit(epochs=2))  # batch size ceil(100 / 5) = 20
    model = _model()
    history = model.fit(X, Y, batch_size=20, steps_per_epoch=2, epochs=5, shuffle=False,
                        verbose=0)
    expected = _model()
    expected.fit(X, Y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # 10 steps either way


def test_unbuilt_sequential_and_subclassed_models_build_from_the_first_batch() -> None:
    model = _model(built=False)
    history = model.fit(_batches(), verbose=0)
    _same(model, history, _array_fit(epochs=1))

    class Net(models.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = layers.Dense(8, activation="relu")
            self.out = layers.Dense(3, activation="softmax")

        def call(self, inputs):
            return self.out(self.hidden(inputs))
    utils.set_random_seed(3)
    net = Net()
    net.compile("sgd", "sparse_categorical_crossentropy")
    net.fit(Batches(), epochs=2, verbose=0)
    assert net.predict(X, verbose=0).shape == (100, 3)


def test_multi_input_batches_by_position_and_by_name() -> None:
    def build() -> models.Model:
        utils.set_random_seed(3)
        a, b = layers.Input((4,), name="a"), layers.Input((2,), name="b")
        out = layers.Dense(3, activation="softmax")(layers.Concatenate()([a, b]))
        model = models.Model([a, b], out)
        model.compile("sgd", "sparse_categorical_crossentropy")
        return model
    model = build()
    expected = model.fit([X[:, :4], X[:, 4:]], Y, batch_size=20, shuffle=False,
                         verbose=0).history["loss"]
    by_position = ((([x[:, :4], x[:, 4:]]), y) for x, y in _batches())
    by_name = (({"a": x[:, :4], "b": x[:, 4:]}, y) for x, y in _batches())
    pair = collections.namedtuple("pair", "a b")  # a tuple by position, rebuilt as one
    by_namedtuple = ((pair(x[:, :4], x[:, 4:]), y) for x, y in _batches())
    for batches in (by_position, by_name, by_namedtuple):
        history = build().fit(batches, verbose=0)
        np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-6)


def test_batch_callbacks_and_progress_without_a_known_length(capsys) -> None:  # noqa: ANN001
    seen = []

    class Hook(callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs=None) -> None:  # noqa: ANN001
            seen.append(batch)
    _model().fit(_batches(), callbacks=[Hook()], verbose=1)
    assert seen == [0, 1, 2, 3, 4]
    assert "loss:" in capsys.readouterr().out


def test_torch_dataloader() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
                        batch_size=20, shuffle=False)
    model = _model()
    history = model.fit(loader, epochs=3, verbose=0)
    _same(model, history, _array_fit())


def test_bad_streams_and_arguments_raise_clear_errors() -> None:
    model = _model()
    with pytest.raises(KilnValueError, match="as a generator, `y` should not be passed"):
        model.fit(_batches(), Y)
    with pytest.raises(KilnValueError, match="as a PyDataset, `sample_weight` should not"):
        model.fit(Batches(), sample_weight=W)
    with pytest.raises(KilnValueError, match="validation_split` is only supported"):
        model.fit(_batches(), validation_split=0.2)
    with pytest.raises(KilnValueError, match="at least one batch. Received: an empty"):
        model.fit(iter([]))
    with pytest.raises(KilnValueError, match=r"format `x`, `\(x,\)`.*tuple of 4 items"):
        model.fit(iter([(X, Y, W, W)]))

    def later_bad():
        yield X[:10], Y[:10]
        yield X[:10, :5], Y[:10]
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(KilnValueError, match=r"x \(a generator\), batch 1: Input .* expected "
                                             r"shape \(None, 6\)"):
        model.fit(later_bad(), verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))

    def bad_labels():
        yield X[:10], Y[:10] + 5
    with pytest.raises(KilnValueError, match=r"batch 0: Expected y to hold labels in \[0, 3\)"):
        _model().evaluate(bad_labels())
    with pytest.raises(KilnValueError, match="steps_per_epoch to be a positive integer"):
        model.fit(_batches(), steps_per_epoch=0)

    class NoLength(utils.PyDataset):
        def __getitem__(self, index: int):
            return X[:10], Y[:10]
    with pytest.raises(NotImplementedError, match="__len__ or a `num_batches`"):
        model.fit(NoLength())
    with pytest.raises(KilnValueError, match="validation_data.*2 items"):
        model.fit(X, Y, validation_data=X)


def test_a_one_shot_validation_source_read_to_its_end_warns_and_gives_no_val_logs() -> None:
    def forever():
        while True:
            yield from _batches()
    with pytest.warns(UserWarning, match=r"validation_data \(a generator\) ran out of data: "
                                         r"epoch 2 has no validation logs"):
        history = _model().fit(forever(), steps_per_epoch=5, epochs=2, verbose=0,
                               validation_data=_batches())
    assert len(history.history["val_loss"]) == 1 and len(history.history["loss"]) == 2


def test_workers_are_shut_down_after_fit() -> None:
    import threading

    _model().fit(Batches(workers=2), validation_data=Batches(workers=2), verbose=0)
    assert not [t for t in threading.enumerate() if t.name.startswith("kiln-pydataset")]


def test_a_pydataset_that_skips_super_init_has_keras_defaults() -> None:
    class Plain(utils.PyDataset):
        def __init__(self) -> None:  # no super().__init__(), as older Sequence code
            self.count = 5

        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: int):
            return X[index * 20:(index + 1) * 20], Y[index * 20:(index + 1) * 20]
    data = Plain()
    assert (data.workers, data.use_multiprocessing, data.max_queue_size) == (1, False, 10)
    model = _model()
    history = model.fit(data, epochs=3, shuffle=False, verbose=0)
    _same(model, history, _array_fit())
