"""Reports of a fit: the report data (:mod:`.data`), its renderings (:mod:`.terminal`,
:mod:`.markdown`, :mod:`.html`), the figures (:mod:`.figures`, :mod:`.plots`), and
:func:`write_report`, the one function here that writes files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bayes_trainmap.analysis import Analysis
from bayes_trainmap.core.storage import write_json, write_text_atomic
from bayes_trainmap.data.fitdir import (
    ANALYSIS_FILE,
    REPORT_FILES,
    FitDirectory,
    load_fit_dir,
    update_manifest,
)
from bayes_trainmap.report.data import build_report, load_analysis, validate_report_json
from bayes_trainmap.report.figures import write_figures
from bayes_trainmap.report.html import render_html
from bayes_trainmap.report.markdown import render_markdown
from bayes_trainmap.report.terminal import render_summary, render_terminal

__all__ = [
    "build_report",
    "load_analysis",
    "render_html",
    "render_markdown",
    "render_summary",
    "render_terminal",
    "validate_report_json",
    "write_report",
]


def write_report(
    fit_dir: str | os.PathLike | FitDirectory, *, analysis: Analysis | None = None, extra_runs: list | None = None
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``report.json``, the figures and the analysis they render.

    ``analysis.json`` is (re)written too, so that a fit directory's report and its
    analysis always agree.

    Parameters
    ----------
    fit_dir : path-like
        A fit directory written by ``fit``.
    analysis : Analysis, optional
        Default: :func:`load_analysis` of the directory (``analysis.json``, or the same
        analysis recomputed from the directory's files).
    extra_runs : list of dict, optional
        Decoded runs that were not fitted, for the "Decoded extra runs" section
        (:func:`bayes_trainmap.monitor.extra_runs.extra_runs_rows`).

    Returns
    -------
    dict
        ``{"md", "html", "json"}`` paths.
    """
    fd = load_fit_dir(fit_dir)
    analysis = analysis if analysis is not None else load_analysis(fd)
    figures = write_figures(fd, analysis)
    report = build_report(fd, analysis, figures, extra_runs)
    validate_report_json(report)
    paths = {kind: fd.path / name for kind, name in REPORT_FILES.items()}
    write_json(fd.path / ANALYSIS_FILE, analysis.to_dict())
    write_text_atomic(paths["json"], json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    write_text_atomic(paths["md"], render_markdown(report))
    write_text_atomic(paths["html"], render_html(report, fd.path))
    figure_files = [fd.path / f for fig in figures.values() for f in fig.values()]
    update_manifest(fd.path, [fd.path / ANALYSIS_FILE, *paths.values(), *figure_files])
    return paths
