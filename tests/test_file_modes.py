"""Files and folders the package creates follow the user's umask (not mkstemp's 0600/0700)."""

from __future__ import annotations

import os
import stat

import pytest

from bayes_trainmap.data import save_trajectories
from bayes_trainmap.data.fitdir import staging_dir


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_trajectories_and_fit_directories_follow_the_umask(tmp_path, ragged_set, umask):
    previous = os.umask(umask)
    try:
        files = save_trajectories(ragged_set, tmp_path / "runs")
        with staging_dir(tmp_path / "fit") as staging:
            (staging / "config.json").write_text("{}")
    finally:
        os.umask(previous)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o666 & ~umask}
    assert stat.S_IMODE((tmp_path / "fit").stat().st_mode) == 0o777 & ~umask
