"""Tests of the generic actor toolkit (no database, no cloaca)."""
