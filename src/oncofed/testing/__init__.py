"""Seeded generators of synthetic test data (DICOM cohorts, bad inputs) for tests and the demo."""

from oncofed.testing.dicom import (
    CohortManifest,
    generate_cohort,
    generate_large,
    generate_many_small,
    write_bad_inputs,
)

__all__ = [
    "CohortManifest",
    "generate_cohort",
    "generate_large",
    "generate_many_small",
    "write_bad_inputs",
]
