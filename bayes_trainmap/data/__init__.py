"""Trajectory data: the container, readers and writers, preprocessing, demo sets,
the planted-structure simulator and the fit directory on disk."""

from bayes_trainmap.data.demos import (
    DEMO_DATA_DIR,
    SIMULATED_DEMO,
    available_demos,
    demo_trajectories,
)
from bayes_trainmap.data.io import (
    import_paper_csvs,
    load_trajectories,
    save_trajectories,
)
from bayes_trainmap.data.preprocess import (
    ZScoreInfo,
    split_runs,
    validate,
    zscore_per_run,
)
from bayes_trainmap.data.trajectories import IDENTIFIER_COLUMNS, TrajectorySet

__all__ = [
    "DEMO_DATA_DIR",
    "IDENTIFIER_COLUMNS",
    "SIMULATED_DEMO",
    "TrajectorySet",
    "ZScoreInfo",
    "available_demos",
    "demo_trajectories",
    "import_paper_csvs",
    "load_trajectories",
    "save_trajectories",
    "split_runs",
    "validate",
    "zscore_per_run",
]
