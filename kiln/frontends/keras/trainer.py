"""compile / fit / evaluate / predict for Model (being written)."""

from __future__ import annotations


class Trainer:
    def __init__(self) -> None:
        self.compiled = False
