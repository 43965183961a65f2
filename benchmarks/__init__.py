"""cloaca's load benchmarks (never imported by the tests)."""
