"""model.summary() prints Keras 3's table with Keras's parameter counts and sizes."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models


def _lines(model: models.Model, **kwargs) -> list[str]:  # noqa: ANN003
    captured = []
    model.summary(print_fn=captured.append, **kwargs)
    assert len(captured) == 1  # the whole text at once, as Keras 3 passes it
    return captured[0].splitlines()


def test_book_mlp_summary() -> None:
    model = models.Sequential([layers.Input((784,)),
                               layers.Dense(512, activation="relu", name="hidden"),
                               layers.Dense(10, activation="softmax", name="probs")],
                              name="mnist_mlp")
    lines = _lines(model)
    assert lines[0] == 'Model: "mnist_mlp"'
    assert lines[1].startswith("┏") and lines[3].startswith("┡") and lines[-4].startswith("└")
    assert [c.strip() for c in lines[2].strip("┃").split("┃")] == ["Layer (type)",
                                                                   "Output Shape", "Param #"]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in (lines[4], lines[6])]
    assert rows == [["hidden (Dense)", "(None, 512)", "401,920"],
                    ["probs (Dense)", "(None, 10)", "5,130"]]
    assert lines[-3:] == [" Total params: 407,050 (1.55 MB)",
                          " Trainable params: 407,050 (1.55 MB)",
                          " Non-trainable params: 0 (0.00 B)"]
    assert all(len(line) == 88 for line in lines[1:-3])  # Keras's default width
    assert model.count_params() == 407_050


def test_optimizer_params_after_training() -> None:
    model = models.Sequential([layers.Input((3,)), layers.Dense(4), layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    lines = _lines(model)
    # Adam: two slots per parameter plus iterations (int64) and learning_rate (float32)
    assert lines[-4:] == [" Total params: 80 (324.00 B)",
                          " Trainable params: 26 (104.00 B)",
                          " Non-trainable params: 0 (0.00 B)",
                          " Optimizer params: 54 (220.00 B)"]


def test_batch_normalization_counts_non_trainable() -> None:
    model = models.Sequential([layers.Input((16,)), layers.Dense(64),
                               layers.BatchNormalization(), layers.Dense(1)])
    text = "\n".join(_lines(model))
    assert "256" in text
    assert " Total params: 1,409 (5.50 KB)" in text
    assert " Trainable params: 1,281 (5.00 KB)" in text
    assert " Non-trainable params: 128 (512.00 B)" in text


def test_functional_summary_has_connected_to() -> None:
    a = layers.Input((8,), name="text")
    b = layers.Input((4,), name="meta")
    ha = layers.Dense(16, name="text_dense")(a)
    hb = layers.Dense(16, name="meta_dense")(b)
    out = layers.Dense(1, name="score")(layers.Concatenate(name="joined")([ha, hb]))
    model = models.Model(inputs=[a, b], outputs=out, name="two_towers")
    lines = _lines(model)
    assert [c.strip() for c in lines[2].strip("┃").split("┃")] == [
        "Layer (type)", "Output Shape", "Param #", "Connected to"]
    assert all(len(line) == 108 for line in lines[1:-3])
    text = "\n".join(lines)
    assert "text (InputLayer)" in text and "-" in text
    joined = next(line for line in lines if "joined (Concatenate)" in line)
    cells = [c.strip() for c in joined.strip("│").split("│")]
    assert cells[1:3] == ["(None, 32)", "0"] and cells[3].startswith("text_dense[0][0]")
    assert "meta_dense[0][0]" in text
    assert " Total params: 257 (1.00 KB)" in text  # 144 + 80 + 33


@pytest.mark.skipif(not hasattr(layers, "Conv2D"), reason="conv layers not built yet")
def test_book_convnet_shapes_and_counts() -> None:
    model = models.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dense(10, activation="softmax")])
    rows = [[c.strip() for c in line.strip("│").split("│")]
            for line in _lines(model) if line.startswith("│")]
    assert [r[1:] for r in rows] == [["(None, 26, 26, 32)", "320"],
                                     ["(None, 13, 13, 32)", "0"],
                                     ["(None, 11, 11, 64)", "18,496"],
                                     ["(None, 5, 5, 64)", "0"],
                                     ["(None, 1600)", "0"],
                                     ["(None, 10)", "16,010"]]
    assert model.count_params() == 34_826


def test_unbuilt_and_custom_width(capsys: pytest.CaptureFixture[str]) -> None:
    model = models.Sequential([layers.Dense(3, name="later")], name="lazy")
    model.summary(line_length=80)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'Model: "lazy"' and all(len(line) == 80 for line in out[1:-3])
    assert "0 (unbuilt)" in "\n".join(out)
    with pytest.raises(ValueError, match="Insufficient console width"):
        model.summary(line_length=8)
