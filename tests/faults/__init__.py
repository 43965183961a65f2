"""Fault-injection harness: runner processes SIGKILLed on a shared PostgreSQL."""
