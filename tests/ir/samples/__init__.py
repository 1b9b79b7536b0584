"""Sample applications of every op, shared by the registry-driven tests.

Each family module lists `SAMPLES`; tests/ir/test_registry.py checks that every registered op
has at least one sample, every differentiable op a gradient-checkable one, and runs the
gradient check and the text round trip over all of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAMILIES = ("constant", "elementwise", "reduce", "shape", "linalg", "nn", "indexing",
            "random", "control", "fused", "image")


@dataclass
class Sample:
    """One application of an op: its operands (arrays), attributes and optional body.

    `grad` says whether a finite-difference check is meaningful here (False for samples at
    kinks or of non-differentiable ops); `wrt` limits the check to some operands.
    """

    op: str
    inputs: list[np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    grad: bool = True
    wrt: tuple[int, ...] | None = None
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}" if self.name else self.op


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def all_samples() -> list[Sample]:
    samples: list[Sample] = []
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"tests.ir.samples.{family}")
        except ModuleNotFoundError as err:
            if err.name != f"tests.ir.samples.{family}":
                raise
            continue
        samples.extend(module.SAMPLES)
    return samples
