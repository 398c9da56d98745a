"""Internals shared by the pipeline's packages: atomic writes, the result store, the worker pool, cache paths and
the command line's Ray plumbing. Nothing here is public API."""
