import numpy as np

from tests.ir.samples import Sample, rng

r = rng(4)


def normal(*shape: int) -> np.ndarray:
    return r.standard_normal(shape)


def distinct(*shape: int) -> np.ndarray:
    """No ties, with gaps far wider than the finite-difference step: one max per window."""
    return r.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + r.uniform(0, 0.01, shape)


X, W = normal(2, 5, 5, 2), normal(3, 3, 2, 3)
STRIDED = {"strides": (2, 2), "padding": "same"}  # 5x5 -> 3x3
DILATED = {"padding": "same", "dilation": (2, 2)}  # 5x5 -> 5x5
ODD = {"strides": (2, 1), "padding": "valid"}  # 6x5 with a 2x3 kernel -> 3x3

CONV = [
    Sample("conv2d", [X, W]),
    Sample("conv2d", [X, W], STRIDED, name="strided_same"),
    Sample("conv2d", [X, W], DILATED, name="dilated_same"),
    Sample("conv2d", [normal(3, 6, 5, 2), normal(2, 3, 2, 1)], ODD, name="asymmetric"),
    Sample("conv2d", [normal(1, 3, 4, 1), normal(2, 2, 1, 2)], {"padding": "same"},
           name="even_kernel_same"),
    Sample("conv2d", [X.astype(np.float32), W.astype(np.float32)], STRIDED, grad=False,
           name="f32"),
    Sample("conv2d_grad_input", [normal(2, 3, 3, 3), W], {"input_size": (5, 5), **STRIDED},
           name="strided_same"),
    Sample("conv2d_grad_input", [normal(2, 5, 5, 3), W], {"input_size": (5, 5), **DILATED},
           name="dilated_same"),
    Sample("conv2d_grad_input", [normal(2, 2, 2, 3), W],
           {"input_size": (6, 6), "strides": (2, 2)}, name="valid_leftover"),
    Sample("conv2d_grad_input", [normal(3, 3, 3, 1), normal(2, 3, 2, 1)],
           {"input_size": (6, 5), **ODD}, name="asymmetric"),
    Sample("conv2d_grad_filter", [X, normal(2, 3, 3, 3)], {"kernel_size": (3, 3), **STRIDED},
           name="strided_same"),
    Sample("conv2d_grad_filter", [X, normal(2, 5, 5, 3)], {"kernel_size": (3, 3), **DILATED},
           name="dilated_same"),
    Sample("conv2d_grad_filter", [normal(2, 6, 6, 2), normal(2, 2, 2, 3)],
           {"kernel_size": (3, 3), "strides": (2, 2)}, name="valid_leftover"),
    Sample("conv2d_grad_filter", [normal(2, 6, 5, 2), normal(2, 3, 3, 1)],
           {"kernel_size": (2, 3), **ODD}, name="asymmetric"),
]

DW = normal(3, 3, 2, 2)  # a depthwise kernel: 2 channels, multiplier 2
DEPTHWISE = [
    Sample("depthwise_conv2d", [X, DW]),
    Sample("depthwise_conv2d", [X, DW], STRIDED, name="strided_same"),
    Sample("depthwise_conv2d", [X, DW], DILATED, name="dilated_same"),
    Sample("depthwise_conv2d", [normal(3, 6, 5, 2), normal(2, 3, 2, 1)], ODD,
           name="asymmetric"),
    Sample("depthwise_conv2d", [normal(1, 3, 4, 3), normal(2, 2, 3, 1)], {"padding": "same"},
           name="even_kernel_same"),
    Sample("depthwise_conv2d", [X.astype(np.float32), DW.astype(np.float32)], STRIDED,
           grad=False, name="f32"),
    Sample("depthwise_conv2d_grad_input", [normal(2, 3, 3, 4), DW],
           {"input_size": (5, 5), **STRIDED}, name="strided_same"),
    Sample("depthwise_conv2d_grad_input", [normal(2, 5, 5, 4), DW],
           {"input_size": (5, 5), **DILATED}, name="dilated_same"),
    Sample("depthwise_conv2d_grad_input", [normal(2, 2, 2, 4), DW],
           {"input_size": (6, 6), "strides": (2, 2)}, name="valid_leftover"),
    Sample("depthwise_conv2d_grad_input", [normal(3, 3, 3, 2), normal(2, 3, 2, 1)],
           {"input_size": (6, 5), **ODD}, name="asymmetric"),
    Sample("depthwise_conv2d_grad_filter", [X, normal(2, 3, 3, 4)],
           {"kernel_size": (3, 3), **STRIDED}, name="strided_same"),
    Sample("depthwise_conv2d_grad_filter", [X, normal(2, 5, 5, 6)],
           {"kernel_size": (3, 3), **DILATED}, name="dilated_multiplier3"),
    Sample("depthwise_conv2d_grad_filter", [normal(2, 6, 6, 2), normal(2, 2, 2, 2)],
           {"kernel_size": (3, 3), "strides": (2, 2)}, name="valid_leftover"),
    Sample("depthwise_conv2d_grad_filter", [normal(2, 6, 5, 2), normal(2, 3, 3, 2)],
           {"kernel_size": (2, 3), **ODD}, name="asymmetric"),
]

P = distinct(2, 5, 5, 2)
OVERLAP = {"pool_size": (3, 3), "strides": (1, 1), "padding": "same"}  # 5x5 -> 5x5
STRIDED_POOL = {"pool_size": (3, 3), "strides": (2, 2), "padding": "same"}  # 5x5 -> 3x3
RECT = {"pool_size": (2, 3), "strides": (1, 2)}  # valid, 5x5 -> 4x2

POOL = [
    Sample("max_pool2d", [P]),
    Sample("max_pool2d", [P], OVERLAP, name="overlap_same"),
    Sample("max_pool2d", [P], STRIDED_POOL, name="strided_same"),
    Sample("max_pool2d", [P], RECT, name="rect"),
    Sample("max_pool2d", [P.astype(np.float32)], OVERLAP, grad=False, name="f32"),
    Sample("max_pool2d_grad", [P, normal(2, 2, 2, 2)]),
    Sample("max_pool2d_grad", [P, normal(2, 5, 5, 2)], OVERLAP, name="overlap_same"),
    Sample("max_pool2d_grad", [P, normal(2, 3, 3, 2)], STRIDED_POOL, name="strided_same"),
    Sample("max_pool2d_select", [P, normal(2, 5, 5, 2)], OVERLAP, name="overlap_same"),
    Sample("max_pool2d_select", [P, normal(2, 5, 5, 2)], RECT, name="rect"),
    Sample("avg_pool2d", [normal(2, 5, 5, 2)]),
    Sample("avg_pool2d", [normal(2, 5, 5, 2)], OVERLAP, name="overlap_same"),
    Sample("avg_pool2d", [normal(2, 5, 5, 2)], STRIDED_POOL, name="strided_same"),
    Sample("avg_pool2d", [normal(2, 5, 5, 2)], RECT, name="rect"),
    Sample("avg_pool2d_grad", [normal(2, 2, 2, 2)], {"input_size": (5, 5)}),
    Sample("avg_pool2d_grad", [normal(2, 5, 5, 2)], {"input_size": (5, 5), **OVERLAP},
           name="overlap_same"),
    Sample("avg_pool2d_grad", [normal(2, 3, 3, 2)], {"input_size": (5, 5), **STRIDED_POOL},
           name="strided_same"),
]

SOFTMAX = [
    Sample(op, [normal(3, 5) * 2], name="last")
    for op in ("softmax", "log_softmax")
] + [
    Sample(op, [normal(2, 3, 4)], {"axis": 1}, name="middle")
    for op in ("softmax", "log_softmax")
] + [
    Sample(op, [normal(2, 3, 4)], {"axis": (1, 2)}, name="two_axes")
    for op in ("softmax", "log_softmax")
] + [
    Sample(op, [np.array([[1000.0, 0.0, -1000.0], [-800.0, -799.0, -801.0]])], grad=False,
           name="large")
    for op in ("softmax", "log_softmax")
]

SAMPLES = CONV + DEPTHWISE + POOL + SOFTMAX
