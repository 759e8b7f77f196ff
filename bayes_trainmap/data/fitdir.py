"""The fit directory: everything ``fit`` produces, in one place on disk.

Layout (all files written together; the directory appears atomically)::

    <out>/
      config.json           options, package version, data path, features, split run ids
      model.json            the fitted HMMParams (JSON, never pickle)
      selection.csv         one row per (K, restart) of the BIC sweep
      selection_curve.csv   one row per K (best restart by training log-likelihood)
      zscored.parquet       run, step, split, z-scored features, outcome columns
      decoded.parquet       run, step, split, state (Viterbi)
      zscore.json           z-scoring window, per-run means/stds, constant features
      summary.json          chosen K, BIC curve, occupancy, per-run state paths, ...
      analysis.json         training map, convergence, detour regression, ... (when analysed)
      report.{md,html,json} the report (unless --no-report)
      posterior.nc          posterior draws, ArviZ netCDF (--mode svi)
      figures/              PNG and SVG figures

The directory is first written as a hidden sibling ``.<name>.tmp-XXXX`` and renamed
into place, so a failed fit never leaves a half-written directory behind. An
existing ``<out>`` is replaced only if it is itself a fit directory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from bayes_trainmap.core.errors import FitDirectoryError
from bayes_trainmap.inference.params import HMMParams

__all__ = [
    "FIT_DIR_FORMAT",
    "FitDirectory",
    "check_output_dir",
    "is_fit_dir",
    "load_fit_dir",
    "read_json",
    "staging_dir",
    "write_json",
]

#: Marker stored in ``config.json`` that identifies a fit directory.
FIT_DIR_FORMAT = "bayes_trainmap.fit"
FIT_DIR_VERSION = 1

CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
SELECTION_FILE = "selection.csv"
CURVE_FILE = "selection_curve.csv"
ZSCORED_FILE = "zscored.parquet"
DECODED_FILE = "decoded.parquet"
ZSCORE_FILE = "zscore.json"
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"

#: Files without which a directory is not a usable fit directory.
REQUIRED_FILES = (CONFIG_FILE, MODEL_FILE, DECODED_FILE, ZSCORED_FILE, SUMMARY_FILE)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None  # strict JSON has no NaN/Inf
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.DataFrame):
        return _to_jsonable(value.to_dict(orient="records"))
    return value


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as strict JSON (numpy types converted, NaN/Inf as null)."""
    Path(path).write_text(json.dumps(_to_jsonable(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is malformed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FitDirectoryError(f"'{path}' is not valid JSON: {exc}") from exc


def is_fit_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by :mod:`bayes_trainmap` ``fit``."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FIT_DIR_FORMAT
    except (ValueError, AttributeError, OSError):
        return False


def check_output_dir(out: str | os.PathLike) -> Path:
    """Check that ``out`` may receive a fit directory; return it as a Path.

    ``out`` may be absent, an empty directory, or an existing fit directory
    (which will be replaced).

    Raises
    ------
    FitDirectoryError
        If ``out`` is a file or a non-empty directory that is not a fit directory.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FitDirectoryError(f"output path '{out}' exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not is_fit_dir(out):
            raise FitDirectoryError(
                f"output directory '{out}' exists and is not a fit directory; refusing to replace it "
                "(choose another --out or remove it)"
            )
    return out


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden sibling directory to write into; rename it to ``out`` on success.

    On any exception the staging directory is removed and ``out`` is untouched.
    An existing ``out`` (checked with :func:`check_output_dir`) is swapped out only
    after the new directory is complete.
    """
    out = check_output_dir(out)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield staging
        check_output_dir(out)  # it may have appeared while we were fitting
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.rename(out, retired / out.name)
            os.rename(staging, out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class FitDirectory:
    """Read access to a fit directory; files are loaded on first use.

    Parameters
    ----------
    path : path-like

    Raises
    ------
    FitDirectoryError
        If ``path`` is not a complete fit directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FitDirectoryError(f"fit directory '{self.path}' does not exist")
        if not is_fit_dir(self.path):
            raise FitDirectoryError(f"'{self.path}' is not a fit directory (no {CONFIG_FILE} written by fit)")
        missing = [f for f in REQUIRED_FILES if not (self.path / f).is_file()]
        if missing:
            raise FitDirectoryError(f"fit directory '{self.path}' is incomplete: missing {missing}")

    def __repr__(self) -> str:
        return f"FitDirectory({str(self.path)!r})"

    @property
    def figures_dir(self) -> Path:
        """``figures/`` inside the fit directory."""
        return self.path / FIGURES_DIR

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """Options, version, data path, features and split of the fit."""
        return read_json(self.path / CONFIG_FILE)

    @functools.cached_property
    def summary(self) -> dict[str, Any]:
        """The fit's summary (chosen K, curve, occupancy, per-run paths)."""
        return read_json(self.path / SUMMARY_FILE)

    @functools.cached_property
    def zscore(self) -> dict[str, Any]:
        """The z-scoring description (``ZScoreInfo.to_dict()``)."""
        path = self.path / ZSCORE_FILE
        return read_json(path) if path.is_file() else {}

    @functools.cached_property
    def params(self):
        """The fitted :class:`inference.params.HMMParams`."""
        return HMMParams.load(self.path / MODEL_FILE)

    @functools.cached_property
    def selection(self) -> pd.DataFrame | None:
        """The (K, restart) table of the BIC sweep."""
        path = self.path / SELECTION_FILE
        return pd.read_csv(path) if path.is_file() else None

    @functools.cached_property
    def curve(self) -> pd.DataFrame | None:
        """The BIC curve, one row per K."""
        path = self.path / CURVE_FILE
        return pd.read_csv(path) if path.is_file() else None

    @functools.cached_property
    def zscored(self) -> pd.DataFrame:
        """run, step, split, z-scored features and outcomes, runs in model order."""
        return pd.read_parquet(self.path / ZSCORED_FILE)

    @functools.cached_property
    def decoded(self) -> pd.DataFrame:
        """run, step, split, state (Viterbi), runs in model order."""
        return pd.read_parquet(self.path / DECODED_FILE)

    @property
    def feature_names(self) -> list[str]:
        """Features of the model, in column order."""
        return list(self.config["features"])

    @property
    def run_ids(self) -> list[str]:
        """Runs in model order (the order of rows in the Parquet files)."""
        return list(self.summary["run_ids"])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """z-scored features ``Z (n, d)``, ``lengths (N,)`` and Viterbi ``paths (n,)``."""
        frame = self.zscored
        runs = frame["run"].astype(str)
        order = list(dict.fromkeys(runs))
        lengths = runs.value_counts().reindex(order).to_numpy(dtype=np.int64)
        paths = self.decoded["state"].to_numpy(dtype=np.int64)
        return frame[self.feature_names].to_numpy(dtype=np.float64), lengths, paths


def load_fit_dir(path: str | os.PathLike) -> FitDirectory:
    """Open a fit directory written by ``fit`` (see :class:`FitDirectory`)."""
    return FitDirectory(path)
