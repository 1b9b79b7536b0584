"""A model script for `kiln compile` with summed metrics (tests/e2e/test_cli.py): 4 -> 2
sigmoid, binary cross-entropy, AUC and precision at two thresholds."""

from kiln import layers, metrics, models

model = models.Sequential([layers.Input(shape=(4,)), layers.Dense(2, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy",
              metrics=[metrics.AUC(), metrics.Precision(thresholds=[0.3, 0.7])])
