"""The report's feature glossary, rendered from the one table :data:`bayes_trainmap.core.schema.STATISTIC_GLOSSARY`.

Reports and figures name features by their data column names only (``spectral``,
``var_b``, ...); the glossary gives, for every feature a fit uses, the paper's
appendix-B name next to ours and a one-line meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

from bayes_trainmap.core.schema import STATISTIC_GLOSSARY

__all__ = ["GLOSSARY_NOTE", "glossary_table"]

GLOSSARY_NOTE = (
    "Features are named by their data columns throughout this report; the paper (Hu et al. 2023, "
    "appendix B, Table 3) names them as in the second column."
)
NOT_IN_PAPER = ("–", "not one of the paper's appendix-B statistics (a column of the data)")


def glossary_table(features: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Glossary rows for ``features``, in the fit's feature order.

    Returns
    -------
    header : list of str
        ``["column", "paper (appendix B)", "meaning"]``
    rows : list of [column, paper name, meaning]
    """
    rows = [[str(f), *STATISTIC_GLOSSARY.get(str(f), NOT_IN_PAPER)] for f in features]
    return ["column", "paper (appendix B)", "meaning"], rows
