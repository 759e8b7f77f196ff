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
      resampling.json       robustness section and interval summaries (when resampled)
      report.{md,html,json} the report (unless --no-report)
      posterior.nc          posterior draws, ArviZ netCDF (--mode svi)
      figures/              PNG and SVG figures
      manifest.json         every file the writer put there

The directory is first written as a hidden sibling ``.<name>.tmp-XXXX`` and renamed
into place, so a failed fit never leaves a half-written directory behind. An
existing ``<out>`` is replaced only if it is provably ours: its ``manifest.json``
lists every file in it. Anything else there (a user's file, a directory that merely
has a ``config.json`` claiming to be a fit) is refused, never deleted.

:func:`write_fit_dir` writes the directory and :class:`FitDirectory` reads it; the
file names are defined once, here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa

from bayes_trainmap.core.errors import FitDirectoryError
from bayes_trainmap.core.storage import umask_mode, write_json
from bayes_trainmap.data.fitted import FittedRuns
from bayes_trainmap.inference.params import HMMParams

__all__ = [
    "FIT_DIR_FORMAT",
    "FitDirectory",
    "check_integrity",
    "check_output_dir",
    "is_fit_dir",
    "load_fit_dir",
    "read_json",
    "staging_dir",
    "update_manifest",
    "write_fit_dir",
]

#: Marker stored in ``config.json`` that identifies a fit directory.
FIT_DIR_FORMAT = "bayes_trainmap.fit"
#: 2: ``config.json`` holds ``{"config", "resolved", "analysis"}`` sections and a manifest is written.
FIT_DIR_VERSION = 2

CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
SELECTION_FILE = "selection.csv"
CURVE_FILE = "selection_curve.csv"
ZSCORED_FILE = "zscored.parquet"
DECODED_FILE = "decoded.parquet"
ZSCORE_FILE = "zscore.json"
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"
ANALYSIS_FILE = "analysis.json"
#: The resampling results (robustness section, interval summaries), kept apart from
#: ``analysis.json`` so that re-analysing a fit directory does not lose them.
RESAMPLING_FILE = "resampling.json"
POSTERIOR_FILE = "posterior.nc"
MANIFEST_FILE = "manifest.json"
REPORT_FILES = {"md": "report.md", "html": "report.html", "json": "report.json"}

#: Files without which a directory is not a usable fit directory.
REQUIRED_FILES = (CONFIG_FILE, MODEL_FILE, DECODED_FILE, ZSCORED_FILE, SUMMARY_FILE)




def read_json(path: str | os.PathLike, expected: type = dict) -> Any:
    """Read a JSON file of type ``expected``, naming the file in the error if it is not one."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, the int-string limit, deep nesting
        raise FitDirectoryError(f"'{path}' is not valid JSON: {str(exc)[:200]}") from None
    except OSError as exc:
        raise FitDirectoryError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if not isinstance(value, expected):
        raise FitDirectoryError(f"'{path}' must hold a JSON {expected.__name__}, found {type(value).__name__}")
    return value


def is_fit_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by :mod:`bayes_trainmap` ``fit``."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        marked = json.loads(config.read_text(encoding="utf-8")).get("format") == FIT_DIR_FORMAT
    except (ValueError, AttributeError, OSError, RecursionError):
        return False
    return marked and (Path(path) / MANIFEST_FILE).is_file()


def check_output_dir(out: str | os.PathLike) -> Path:
    """Check that ``out`` may receive a fit directory; return it as a Path.

    ``out`` may be absent, an empty directory, or a fit directory whose manifest lists
    every file in it (it will be replaced).

    Raises
    ------
    FitDirectoryError
        If ``out`` is a file, lies below a file, or is a non-empty directory that is
        not provably a fit directory.
    """
    out = Path(out)
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise FitDirectoryError(f"cannot create '{out}': '{parent}' is a file; choose another --out")
    if not out.exists():
        return out
    if not out.is_dir():
        raise FitDirectoryError(f"output path '{out}' exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return out
    if not is_fit_dir(out):
        raise FitDirectoryError(
            f"output directory '{out}' exists and is not a fit directory; refusing to replace it "
            "(choose another --out or remove it)"
        )
    foreign = sorted(set(_files_below(out)) - set(_manifest(out)) - {MANIFEST_FILE})
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FitDirectoryError(
            f"output directory '{out}' holds files that fit did not write ({shown}); refusing to replace it "
            "(choose another --out or move them)"
        )
    return out


def _files_below(directory: Path) -> list[str]:
    """Relative POSIX paths of every file below ``directory``."""
    return [p.relative_to(directory).as_posix() for p in directory.rglob("*") if not p.is_dir()]


def _manifest(directory: Path) -> list[str]:
    """The files a fit directory's manifest lists; [] when there is none or it is unreadable."""
    try:
        listed = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(f) for f in listed] if isinstance(listed, list) else []


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
        os.chmod(staging, umask_mode(0o777))  # mkdtemp makes 0700; a fit directory follows the umask
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


def write_fit_dir(
    out: str | os.PathLike,
    *,
    config: dict[str, Any],
    params: HMMParams,
    runs: FittedRuns,
    zscore: dict[str, Any],
    summary: dict[str, Any],
    selection_table: pd.DataFrame,
    selection_curve: pd.DataFrame,
    analysis: dict[str, Any] | None = None,
    resampling: dict[str, Any] | None = None,
    extras: Sequence[Callable[[Path], None]] = (),
) -> Path:
    """Write a fit directory atomically; return ``out``.

    Parameters
    ----------
    out : path-like
        Target; an existing fit directory there is replaced (see :func:`check_output_dir`).
    config, zscore, summary, analysis : dict
        Contents of ``config.json``, ``zscore.json``, ``summary.json``, ``analysis.json``.
    params : HMMParams
    runs : FittedRuns
        The decoded runs (``zscored.parquet`` and ``decoded.parquet``).
    selection_table, selection_curve : pandas.DataFrame
        ``selection.csv`` and ``selection_curve.csv``.
    extras : sequence of callables
        Each is called with the staging directory to add files (figures, the
        posterior, the report) before the directory is moved into place, so a
        failing extra leaves no fit directory behind.
    """
    out = check_output_dir(out)
    with staging_dir(out) as tmp:
        params.save(tmp / MODEL_FILE)
        selection_table.to_csv(tmp / SELECTION_FILE, index=False)
        selection_curve.to_csv(tmp / CURVE_FILE, index=False)
        runs.zscored_frame().to_parquet(tmp / ZSCORED_FILE, index=False)
        runs.decoded_frame().to_parquet(tmp / DECODED_FILE, index=False)
        write_json(tmp / ZSCORE_FILE, zscore)
        write_json(tmp / SUMMARY_FILE, summary)
        write_json(tmp / CONFIG_FILE, config)
        if analysis is not None:
            write_json(tmp / ANALYSIS_FILE, analysis)
        if resampling is not None:
            write_json(tmp / RESAMPLING_FILE, resampling)
        update_manifest(tmp)  # the extras may open the staging directory as a fit directory
        for extra in extras:
            extra(tmp)
        update_manifest(tmp)
    return out


def update_manifest(directory: str | os.PathLike, added: Sequence[str | os.PathLike] = ()) -> None:
    """Record files as written by this package in ``manifest.json``, with their SHA-256.

    Without ``added``, every file now below ``directory`` is recorded (the writer's
    staging directory holds nothing else); with ``added``, those files (absolute or
    relative to ``directory``) join the existing list, e.g. after ``report`` re-renders.
    The checksums of the recorded files let a reader tell a file this package wrote
    from one changed or damaged afterwards (:class:`FitDirectory`).
    """
    directory = Path(directory)
    if added:
        fresh = {Path(os.path.relpath(p, directory)).as_posix() for p in added}
        names = set(_manifest(directory)) | fresh
        kept = {k: v for k, v in _recorded_digests(directory).items() if k in names and k not in fresh}
    else:
        fresh = names = set(_files_below(directory))
        kept = {}
    names = sorted(names - {MANIFEST_FILE})
    # Only the files just written are hashed: the others keep the checksum they were
    # written with, so a file changed behind the package's back stays detectable.
    digests = {**kept, **{n: _sha256(directory / n) for n in names if n in fresh and (directory / n).is_file()}}
    write_json(directory / MANIFEST_FILE, {"files": names, "sha256": dict(sorted(digests.items()))})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_digests(directory: Path) -> dict[str, str]:
    """``manifest.json``'s checksums; {} for a manifest without them (written before 0.2)."""
    try:
        recorded = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8")).get("sha256", {})
    except (OSError, ValueError, AttributeError, RecursionError):
        raise FitDirectoryError(f"'{directory / MANIFEST_FILE}' is not a valid manifest") from None
    if not isinstance(recorded, dict):
        raise FitDirectoryError(f"'{directory / MANIFEST_FILE}' is not a valid manifest")
    return {str(k): str(v) for k, v in recorded.items()}


def check_integrity(directory: str | os.PathLike) -> None:
    """Refuse a fit directory whose inputs changed after this package wrote them.

    Every file ``manifest.json`` has a checksum for, except the report and figures
    (which ``report`` rewrites), must still have that checksum. A file deleted since is
    not an error here (``analysis.json`` is recomputed; the required files are checked
    by :class:`FitDirectory`).

    Raises
    ------
    FitDirectoryError
        Naming the changed files.
    """
    directory = Path(directory)
    outputs = set(REPORT_FILES.values())
    changed = [
        name for name, digest in sorted(_recorded_digests(directory).items())
        if name not in outputs and not name.startswith(f"{FIGURES_DIR}/")
        and (directory / name).is_file() and _sha256(directory / name) != digest
    ]
    if changed:
        raise FitDirectoryError(
            f"fit directory '{directory}' was changed after fit wrote it: {', '.join(changed)} "
            f"{'differs' if len(changed) == 1 else 'differ'} from the checksums in {MANIFEST_FILE} "
            "(restore the files or fit again)"
        )


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
            if (self.path / CONFIG_FILE).is_file() and (self.path / MANIFEST_FILE).is_file():
                read_json(self.path / CONFIG_FILE)  # names what is wrong with a damaged config.json
                raise FitDirectoryError(f"'{self.path / CONFIG_FILE}' does not mark a fit directory written by fit")
            raise FitDirectoryError(
                f"'{self.path}' is not a fit directory (no {CONFIG_FILE} and {MANIFEST_FILE} written by fit)"
            )
        missing = [f for f in REQUIRED_FILES if not (self.path / f).is_file()]
        if missing:
            raise FitDirectoryError(f"fit directory '{self.path}' is incomplete: missing {missing}")
        check_integrity(self.path)

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
    def params(self) -> HMMParams:
        """The fitted :class:`~bayes_trainmap.inference.params.HMMParams` (validated on load)."""
        try:
            return HMMParams.load(self.path / MODEL_FILE)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise FitDirectoryError(f"'{self.path / MODEL_FILE}' is not a valid model: {str(exc)[:200]}") from None

    @functools.cached_property
    def selection(self) -> pd.DataFrame | None:
        """The (K, restart) table of the BIC sweep."""
        path = self.path / SELECTION_FILE
        return _read_csv(path) if path.is_file() else None

    @functools.cached_property
    def curve(self) -> pd.DataFrame | None:
        """The BIC curve, one row per K (``n_states`` a positive integer, ``bic`` a number)."""
        path = self.path / CURVE_FILE
        if not path.is_file():
            return None
        curve = _read_csv(path)
        counts = ["n_states", *(["n_parameters"] if "n_parameters" in curve else [])]
        whole = all(_whole_numbers(curve.get(c)) for c in counts)
        bic = pd.to_numeric(curve["bic"], errors="coerce") if "bic" in curve else None
        if len(curve) == 0 or not whole or bic is None or bic.isna().all():
            raise FitDirectoryError(
                f"'{path}' is not a BIC curve (columns n_states and n_parameters: positive integers, bic: numbers)"
            )
        return curve

    @functools.cached_property
    def zscored(self) -> pd.DataFrame:
        """run, step, split, z-scored features and outcomes, runs in model order."""
        return _read_parquet(self.path / ZSCORED_FILE)

    @functools.cached_property
    def decoded(self) -> pd.DataFrame:
        """run, step, split, state (Viterbi), runs in model order."""
        return _read_parquet(self.path / DECODED_FILE)

    @property
    def resolved(self) -> dict[str, Any]:
        """What the fit resolved from its options: features, split, K searched, outcome, ..."""
        return dict(self.config.get("resolved", {}))

    @property
    def feature_names(self) -> list[str]:
        """Features of the model, in column order."""
        features = self.resolved.get("features")
        if not isinstance(features, list) or not features:
            raise FitDirectoryError(f"'{self.path / CONFIG_FILE}' names no model features")
        return [str(f) for f in features]

    @property
    def run_ids(self) -> list[str]:
        """Runs in model order (the order of rows in the Parquet files)."""
        return list(self.summary["run_ids"])

    @functools.cached_property
    def analysis(self) -> dict[str, Any] | None:
        """``analysis.json``, or None when the analysis did not run."""
        path = self.path / ANALYSIS_FILE
        return read_json(path) if path.is_file() else None

    @functools.cached_property
    def resampling(self) -> dict[str, Any]:
        """``resampling.json``: ``{"robustness": ..., "uncertainty": ...}`` (empty without resampling)."""
        path = self.path / RESAMPLING_FILE
        return read_json(path) if path.is_file() else {}

    def fitted_runs(self) -> FittedRuns:
        """The decoded runs of the fit, as the pipeline produced them."""
        return FittedRuns.from_frames(self.zscored, self.feature_names, self.decoded)

    def decode(self, trajectories):
        """Decode new runs with this fit (see :func:`bayes_trainmap.monitor.decode.decode_runs`).

        Parameters
        ----------
        trajectories : bayes_trainmap.data.TrajectorySet
            Finished runs with the fit's features; normalised as the fit normalised its runs.

        Returns
        -------
        bayes_trainmap.monitor.decode.DecodeResult
            Viterbi states, filtered and smoothed probabilities, edges taken (new ones
            flagged) and detour visits.
        """
        # lazily: the monitor sits above this layer (see the import-linter contract)
        from bayes_trainmap.monitor.decode import decode_runs

        return decode_runs(self, trajectories)


def _whole_numbers(column: pd.Series | None) -> bool:
    """Whether a column holds positive whole numbers only (no missing, text or fractions)."""
    if column is None:
        return False
    values = pd.to_numeric(column, errors="coerce")
    return bool(values.notna().all() and (values >= 1).all() and (values % 1 == 0).all())


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FitDirectoryError(f"cannot read '{path}': {str(exc)[:200]}") from None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FitDirectoryError(f"cannot read '{path}': {str(exc)[:200]}") from None


def load_fit_dir(path: str | os.PathLike | FitDirectory) -> FitDirectory:
    """Open a fit directory written by ``fit`` (see :class:`FitDirectory`); an open one is returned as is,
    so readers handed one do not check and hash its files again."""
    return path if isinstance(path, FitDirectory) else FitDirectory(path)
