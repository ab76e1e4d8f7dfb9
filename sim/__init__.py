"""Simulators for tests, benchmarks and the demo (fake Kubernetes API server, ...)."""
