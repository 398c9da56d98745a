"""Screening reports: ``report.html`` (self-contained, offline), ``report.json`` and ``candidates.parquet``."""

from tuneahead_ray.report._write import DATASET_FLAGS, REPORT_VERSION, dataset_flags, report_payload, write_report

__all__ = ["DATASET_FLAGS", "REPORT_VERSION", "dataset_flags", "report_payload", "write_report"]
