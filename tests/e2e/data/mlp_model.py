"""A small model script for `kiln compile` (tests/e2e/test_cli.py): a Sequential MLP
4 -> 8 relu -> 3 softmax, compiled with RMSprop and sparse categorical cross-entropy, so the
artifact holds predict, train_step and (after a validation run) test_step."""

from kiln import layers, models, optimizers
from kiln.utils import set_random_seed

set_random_seed(7)

model = models.Sequential([
    layers.Input(shape=(4,), name="features"),
    layers.Dense(8, activation="relu", name="hidden"),
    layers.Dense(3, activation="softmax", name="probs"),
])
model.compile(optimizer=optimizers.RMSprop(learning_rate=0.05),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])

if __name__ == "__main__":  # not run by `kiln compile`
    raise SystemExit("this script is meant for `kiln compile`, not to be run")
