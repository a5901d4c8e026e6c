"""Run reports: one HTML page (self-contained) and one Markdown file per run, built from the
manifest and the stage output files. Entry points: `build_report(run_dir)` and `main(run_dir)`."""

from cogumi_ray.reports.build import build_report, main

__all__ = ["build_report", "main"]
