"""A folder tree of small images of every format and mode image_dataset_from_directory
reads (PNG in RGB, L, RGBA and palette; BMP; JPEG in RGB and L; a two-frame GIF; nested and
hidden folders; an upper-case suffix; a text file to skip), made with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (class folder, file, size (h, w), Pillow mode, format)
FILES = [
    ("cats", "a.png", (12, 10), "RGB", "PNG"),
    ("cats", "b.PNG", (7, 9), "L", "PNG"),
    ("cats", "c.bmp", (10, 10), "RGB", "BMP"),
    ("cats", "nested/d.png", (9, 14), "RGBA", "PNG"),
    ("cats", "notes.txt", None, None, None),
    ("dogs", "e.jpg", (16, 12), "RGB", "JPEG"),
    ("dogs", "f.gif", (8, 8), "P", "GIF"),
    ("dogs", "g.png", (5, 11), "P", "PNG"),
    ("dogs", "h.jpeg", (10, 10), "L", "JPEG"),
    (".hidden", "x.png", (4, 4), "RGB", "PNG"),
]


def pixels(shape: tuple[int, int], mode: str, seed: int) -> np.ndarray:
    bands = {"RGB": 3, "RGBA": 4}.get(mode, 0)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*shape, bands) if bands else shape, dtype=np.uint8)


def make_tree(root: Path) -> Path:
    from PIL import Image

    for seed, (folder, name, shape, mode, fmt) in enumerate(FILES):
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            path.write_text("not an image")
            continue
        if mode == "P":
            image = Image.fromarray(pixels(shape, "RGB", seed)).quantize(16)
            if fmt == "GIF":  # two frames: the first is the one read
                second = Image.fromarray(pixels(shape, "RGB", 99)).quantize(16)
                image.save(path, save_all=True, append_images=[second])
                continue
        else:
            image = Image.fromarray(pixels(shape, mode, seed))
        image.save(path, format=fmt)
    return root
