import math

import numpy as np

from tests.ir.samples import Sample, rng

r = rng(11)


def rotation(n: int, h: int, w: int, degrees: float, zoom: float = 1.0,
             shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Keras's rotation-about-the-centre rows [a0 a1 a2 b0 b1 b2], one per image, each image
    turned a little further than the last."""
    rows = []
    for k in range(n):
        t = math.radians(degrees * (k + 1))
        cx, cy = (w - 1) / 2, (h - 1) / 2
        a0, a1 = zoom * math.cos(t), -zoom * math.sin(t)
        b0, b1 = zoom * math.sin(t), zoom * math.cos(t)
        rows.append([a0, a1, shift[0] + cx - cx * a0 - cy * a1,
                     b0, b1, shift[1] + cy - cx * b0 - cy * b1])
    return np.array(rows)


IMAGES = r.standard_normal((2, 5, 6, 3))
TURN = rotation(2, 5, 6, 37.0, zoom=1.3, shift=(0.4, -0.7))  # reaches outside the image
FLIP = np.array([[-1.0, 0, 5, 0, 1, 0], [1, 0, 0, 0, -1, 4]])  # exact: left-right, up-down
# Downsampling 5x6 -> 3x4 with half-pixel centres (Keras's Resizing).
RESIZE = np.array([[6 / 4, 0, 0.5 * 6 / 4 - 0.5, 0, 5 / 3, 0.5 * 5 / 3 - 0.5]] * 2)

SAMPLES = [
    Sample("affine_transform", [IMAGES, TURN], wrt=(0,)),
    *[Sample("affine_transform", [IMAGES, TURN], {"fill_mode": mode}, wrt=(0,), name=mode)
      for mode in ("nearest", "reflect", "mirror", "wrap")],
    Sample("affine_transform", [IMAGES, TURN], {"fill_value": -2.5}, wrt=(0,), name="fill"),
    Sample("affine_transform", [IMAGES, TURN], {"interpolation": "nearest",
                                                "fill_mode": "reflect"}, wrt=(0,),
           name="nearest_reflect"),
    Sample("affine_transform", [IMAGES, FLIP], {"fill_mode": "wrap"}, wrt=(0,), name="flip"),
    Sample("affine_transform", [IMAGES, RESIZE], {"fill_mode": "nearest", "output_size": (3, 4)},
           wrt=(0,), name="resize"),
    Sample("affine_transform", [IMAGES.astype(np.float32), TURN.astype(np.float32)],
           {"fill_mode": "reflect"}, grad=False, name="f32"),
    Sample("affine_transform_grad", [r.standard_normal((2, 3, 4, 3)), RESIZE],
           {"fill_mode": "nearest", "input_size": (5, 6)}, wrt=(0,), name="resize"),
    Sample("affine_transform_grad", [r.standard_normal((2, 5, 6, 3)), TURN],
           {"fill_mode": "constant", "fill_value": 1.0, "input_size": (5, 6)}, wrt=(0,)),
    Sample("affine_transform_grad", [r.standard_normal((2, 5, 6, 3)), TURN],
           {"interpolation": "nearest", "fill_mode": "mirror", "input_size": (5, 6)}, wrt=(0,),
           name="nearest_mirror"),
]
