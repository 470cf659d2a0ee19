"""The landing-data generator: a synthetic bank with known truth, written as a landing folder.

    from kequn.generate import generate
    summary = generate("/tmp/landing", persons=10_000, days=30, seed=42, end="2026-11-25")

Persons are drawn first (hidden attributes, numpy arrays); each person gets 1-5 records in
the four master-data sources, linked only through (often dirty) identifiers; facts follow
from the persons' habits and planted needs. Everything is vectorised and chunked by persons,
so millions of persons take minutes. No Spark: it runs before any JVM.
"""
from ._main import generate

__all__ = ["generate"]
