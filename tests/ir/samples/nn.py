from tests.ir.samples import Sample, rng  # noqa: F401

SAMPLES: list[Sample] = []
