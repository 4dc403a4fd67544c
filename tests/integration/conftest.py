"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.lab import Lab, demo3_lab


@pytest.fixture(params=["gateways", "direct"])
def demo3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """demo3.yaml running on loopback, with gateways and without; bob's phone at 127.0.1.50."""
    lab = demo3_lab(tmp_path, gateways=request.param == "gateways")
    yield lab
    lab.close()
