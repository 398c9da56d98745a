"""Shared test and benchmark harnesses: free ports on 127.0.0.1, local Ray clusters, the soak client and the
benchmark results writer. Importable by tests and by ``benchmarks/`` alike (the repository root is on the path)."""
