"""Sizes for the reliability tests: small in `make test`, full under `make reliability`."""

from __future__ import annotations

import os

FULL = os.environ.get("RELIABILITY_FULL") == "1"


def size(small: int, full: int) -> int:
    """`small` in the everyday suite and CI, `full` under `make reliability`."""
    return full if FULL else small
