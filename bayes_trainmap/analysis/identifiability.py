"""Which per-state coefficients of the occupancy regression the data identify.

The detour regression (:mod:`bayes_trainmap.analysis.detours`) has one coefficient per
visited state and no separate intercept: ``y = X beta + e`` with ``X`` (N, p) the
occupancy fractions, whose rows sum to one. When ``X`` is rank-deficient -- a state
whose occupancy is the same in every run (it is then aliased with the intercept
that the per-state coefficients carry), states whose occupancies are collinear
(common when K over-splits a state), more states than runs -- the least-squares
solution is not unique, and a pseudo-inverse silently picks the minimum-norm one.

A single coefficient ``beta_j = e_j^T beta`` is *estimable* (takes the same value
at every least-squares solution) iff ``e_j`` lies in the row space of ``X``, i.e.
iff ``e_j`` is orthogonal to the null space of ``X``. This module finds the null
space by SVD and marks a state identified iff the norm of its row of the null-space
basis is at most :data:`ALIAS_TOL`.

Numerical rank: singular values ``s_i > RANK_RTOL_FACTOR * max(N, p) * eps * s_max``
count (numpy's ``matrix_rank`` default, ``RANK_RTOL_FACTOR = 1``).

Estimation on a reduced design: the identified columns ``X_I`` together with a
maximal linearly independent subset ``X_B`` of the others (chosen greedily in
column order) form a full-rank design ``R = [X_I, X_B]`` with the same column space
as ``X`` (``X_I`` has full column rank and meets the span of the other columns
only in 0, otherwise a null vector of ``X`` would touch ``I``). OLS on ``R`` gives
the same fitted values, R^2 and F-test as any least-squares fit on ``X``, and its
coefficients on ``X_I`` are the unique ``beta_I``; the coefficients on ``X_B`` are
combinations of aliased states and are not reported.

Constant occupancies (:func:`occupancy_design`): a state ``j`` whose occupancy is
the same ``c_j`` in every run makes *every* per-state coefficient non-estimable
(``X (e_j - c_j 1) = 0`` touches all states), although nothing but the split between
``beta_j`` and the common level is lost. Such states are aliased with the intercept
and are not identified; the others are estimated in the design whose columns are
their occupancies renormalised over the states that vary, ``x_k / (1 - sum_C c)``.
Its column space is that of ``X`` (so R^2 and the F-test are unchanged), and its
coefficient for state ``k`` is ``sum_C c_j beta_j + (1 - sum_C c) beta_k``, which is
estimable: the predicted (standardised) convergence step of a run that puts all of
its non-fixed time in state ``k`` -- the meaning a per-state coefficient has when no
occupancy is fixed. Without constant states the two designs coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALIAS_TOL",
    "RANK_RTOL_FACTOR",
    "DesignIdentification",
    "OccupancyDesign",
    "identify_design",
    "occupancy_design",
]

#: Multiplier of numpy's default rank tolerance ``max(N, p) * eps * s_max``.
RANK_RTOL_FACTOR = 1.0
#: A column is aliased when its row of the orthonormal null-space basis has at least this norm.
ALIAS_TOL = 1e-8


@dataclass(frozen=True)
class DesignIdentification:
    """Identification of the columns of a design matrix ``X`` (N, p).

    Attributes
    ----------
    rank : int
        Numerical rank of ``X``.
    identified : numpy.ndarray of bool, shape (p,)
        Column ``j``'s coefficient is estimable (orthogonal to the null space).
    basis : numpy.ndarray of int, shape (rank,)
        Columns of the full-rank reduced design: every identified column, then
        the greedily chosen independent non-identified ones, in increasing order.
    null_space : numpy.ndarray, shape (p, p - rank)
        Orthonormal basis of the null space of ``X``.
    constant_columns : numpy.ndarray of int
        Columns with zero variance across the N rows (same value in every run).
    alias_groups : list of list of int
        Non-identified columns grouped by the null-space vectors linking them
        (connected components of "appear together in a null vector").
    """

    rank: int
    identified: np.ndarray
    basis: np.ndarray
    null_space: np.ndarray
    constant_columns: np.ndarray
    alias_groups: list

    @property
    def full_rank(self) -> bool:
        return self.rank == self.identified.size


def _rank_tol(s: np.ndarray, shape: tuple[int, int]) -> float:
    return RANK_RTOL_FACTOR * max(shape) * np.finfo(float).eps * (float(s[0]) if s.size else 0.0)


def identify_design(X: np.ndarray) -> DesignIdentification:
    """Numerical rank, null space and estimable columns of a design matrix.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, p)
        Design matrix (finite).

    Returns
    -------
    DesignIdentification
    """
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    if p == 0:
        empty = np.zeros(0, dtype=np.int64)
        return DesignIdentification(0, np.zeros(0, bool), empty, np.zeros((0, 0)), empty, [])
    # Full V (p x p) so that the null space is available when N < p.
    _, s, vt = np.linalg.svd(X, full_matrices=True)
    tol = _rank_tol(s, X.shape)
    rank = int((s > tol).sum())
    null = vt[rank:].T  # (p, p - rank)
    identified = np.linalg.norm(null, axis=1) < ALIAS_TOL if null.size else np.ones(p, dtype=bool)

    basis = list(np.flatnonzero(identified))
    current = rank_of(X[:, basis])
    for j in np.flatnonzero(~identified):
        if current == rank:
            break
        trial = rank_of(X[:, basis + [int(j)]])
        if trial > current:
            basis.append(int(j))
            current = trial
    basis_arr = np.array(sorted(basis), dtype=np.int64)

    spread = X.max(axis=0) - X.min(axis=0) if n else np.zeros(p)
    scale = np.maximum(np.abs(X).max(axis=0), 1.0) if n else np.ones(p)
    constant = np.flatnonzero(spread <= 1e-12 * scale) if n > 1 else np.arange(p)

    groups: list[list[int]] = []
    if null.size:
        # A canonical (reduced row-echelon-like) basis of the null space, so that the
        # groups do not depend on the rotation the SVD happens to return: pivot
        # columns by QR with column pivoting, then N[:, P]^-1 N has the identity on P.
        from scipy.linalg import qr

        nt = null.T
        piv = qr(nt, pivoting=True, mode="economic")[2][: nt.shape[0]]
        canon = np.linalg.solve(nt[:, piv], nt)
        involved = (np.abs(canon) > ALIAS_TOL).T  # (p, p - rank)
        parent = list(range(p))

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for col in involved.T:
            members = np.flatnonzero(col)
            for m in members[1:]:
                parent[find(int(m))] = find(int(members[0]))
        comp: dict[int, list[int]] = {}
        for j in np.flatnonzero(~identified):
            comp.setdefault(find(int(j)), []).append(int(j))
        groups = sorted(comp.values())
    return DesignIdentification(rank, identified, basis_arr, null, constant.astype(np.int64), groups)


def rank_of(X: np.ndarray) -> int:
    """Numerical rank of ``X`` with the module's tolerance (0 for an empty matrix)."""
    X = np.asarray(X, dtype=float)
    if X.size == 0:
        return 0
    s = np.linalg.svd(X, compute_uv=False)
    return int((s > _rank_tol(s, X.shape)).sum())


@dataclass(frozen=True)
class OccupancyDesign:
    """An occupancy design with its constant states set aside (see the module docstring).

    Attributes
    ----------
    constant : numpy.ndarray of int
        Columns of the input whose value is the same in every row.
    shares : numpy.ndarray, shape (len(constant),)
        Those values.
    free : numpy.ndarray of int
        The other columns.
    X : numpy.ndarray, shape (N, len(free))
        The free columns divided by ``1 - shares.sum()`` (rows sum to one).
    identification : DesignIdentification
        Of ``X`` (indices refer to ``free``).
    """

    constant: np.ndarray
    shares: np.ndarray
    free: np.ndarray
    X: np.ndarray
    identification: DesignIdentification

    @property
    def rank(self) -> int:
        return self.identification.rank

    @property
    def identified_columns(self) -> np.ndarray:
        """Input columns whose coefficient is estimated, in increasing order."""
        return self.free[self.identification.identified]

    def coefficient_positions(self) -> np.ndarray:
        """Position in :meth:`reduced` of each of :attr:`identified_columns`."""
        ident = self.identification
        pos = {int(c): i for i, c in enumerate(ident.basis)}
        return np.array([pos[int(j)] for j in np.flatnonzero(ident.identified)], dtype=np.int64)

    def reduced(self) -> np.ndarray:
        """The full-rank design to fit, shape (N, rank)."""
        return self.X[:, self.identification.basis]


def occupancy_design(X: np.ndarray) -> OccupancyDesign:
    """Set aside the constant columns of an occupancy design and identify the rest.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, p)
        Occupancy fractions of the visited states (rows sum to one, N >= 1).

    Returns
    -------
    OccupancyDesign
    """
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    if n > 1:
        spread = X.max(axis=0) - X.min(axis=0)
        constant = np.flatnonzero(spread <= 1e-12 * np.maximum(np.abs(X).max(axis=0), 1.0))
    else:
        constant = np.arange(p)
    free = np.setdiff1d(np.arange(p), constant)
    shares = X[0, constant].copy() if n else np.zeros(0)
    rest = 1.0 - float(shares.sum())
    Xf = X[:, free] / rest if free.size and rest > 0 else X[:, free]
    return OccupancyDesign(constant.astype(np.int64), shares, free.astype(np.int64), Xf, identify_design(Xf))
