"""Records data/keras_text_dataset.json: Keras 3.15's text_dataset_from_directory on
TensorFlow (KERAS_BACKEND=tensorflow; needs tensorflow and keras, not in kiln's extras), on
the tree of files the JSON also holds. Run it with
`python tests/frontends/keras/data/make_keras_text_dataset.py OUT.json`."""

import json
import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
import numpy as np

TREE = {  # path -> text; 13 .txt files in 2 classes, others the walk must skip
    "neg/a.txt": "bad movie",
    "neg/b.txt": "awful, just awful",
    "neg/c.TXT": "not my caf\u00e9",
    "neg/d.txt": "boring",
    "neg/e.txt": "a waste of time",
    "neg/notes.md": "not a text file",
    "neg/sub/f.txt": "worse than the book",
    "pos/g.txt": "great fun",
    "pos/h.txt": "loved it!",
    "pos/i.txt": "a triumph",
    "pos/j.txt": "see it twice",
    "pos/k.txt": "\u00e9l\u00e9gant",
    "pos/deep/er/l.txt": "deeply moving",
    "pos/m.txt": "ten out of ten",
    ".hidden/n.txt": "never read",
}

CASES = {  # name -> keyword arguments
    "default_unshuffled": dict(batch_size=4, shuffle=False),
    "both_seeded": dict(batch_size=3, shuffle=True, seed=7, validation_split=0.3,
                        subset="both"),
    "training_seeded": dict(batch_size=5, shuffle=True, seed=11, validation_split=0.25,
                            subset="training"),
    "validation_seeded": dict(batch_size=5, shuffle=True, seed=11, validation_split=0.25,
                              subset="validation"),
    "categorical": dict(batch_size=4, shuffle=False, label_mode="categorical"),
    "binary": dict(batch_size=4, shuffle=False, label_mode="binary"),
    "class_names_order": dict(batch_size=4, shuffle=False, class_names=["pos", "neg"]),
    "class_names_subset": dict(batch_size=4, shuffle=False, class_names=["pos"]),
    "no_labels": dict(batch_size=4, shuffle=False, labels=None),
    "label_mode_none": dict(batch_size=4, shuffle=False, label_mode=None),
    "max_length": dict(batch_size=4, shuffle=False, max_length=5),
    "unbatched": dict(batch_size=None, shuffle=False),
}


def record(dataset, root):
    """Every element in iteration order, and the dataset's file paths relative to root."""
    batches = []
    for element in dataset:
        if isinstance(element, tuple):
            texts, labels = element
            labels = np.asarray(labels)
            batches.append({"texts": np.asarray(texts).astype(object).tolist(),
                            "labels": labels.tolist(), "label_dtype": str(labels.dtype),
                            "label_shape": list(labels.shape)})
        else:
            batches.append({"texts": np.asarray(element).astype(object).tolist()})
    for batch in batches:  # bytes -> str
        texts = batch["texts"]
        batch["texts"] = ([t.decode("utf-8", "replace") for t in texts]
                          if isinstance(texts, list) else texts.decode("utf-8", "replace"))
    paths = getattr(dataset, "file_paths", None)
    return {"batches": batches, "class_names": getattr(dataset, "class_names", None),
            "file_paths": None if paths is None else
            [os.path.relpath(p, root) for p in paths]}


def main(out):
    root = tempfile.mkdtemp()
    for path, text in TREE.items():
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w", encoding="utf-8") as file:
            file.write(text)
    cases = {}
    for name, kwargs in CASES.items():
        got = keras.utils.text_dataset_from_directory(root, verbose=False, **kwargs)
        subsets = got if isinstance(got, (list, tuple)) else [got]
        cases[name] = {"kwargs": kwargs, "subsets": [record(d, root) for d in subsets]}
    with open(out, "w", encoding="utf-8") as file:
        json.dump({"keras": keras.__version__, "tree": TREE, "cases": cases}, file,
                  indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
