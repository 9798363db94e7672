"""Fixtures shared by the data-layer tests: where ../shared is, and a skip when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(rel: str) -> Path:
    """``../shared/<rel>``, or skip the test with the reason when it is not on this machine."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"needs ../shared/{rel}: not present")
    return p
