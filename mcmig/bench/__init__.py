"""Benchmarks that print figures (never timed assertions)."""

from pathlib import Path

# The checkout the benchmarks run from (profiles, SIPp scenarios, Kamailio config).
ROOT = Path(__file__).resolve().parents[2]
