"""Speed and accuracy benchmarks: thin command-line scripts over the package and ``tests._harness``."""
