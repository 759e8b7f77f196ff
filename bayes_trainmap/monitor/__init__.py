"""Using a fitted map while training: decode new runs, filter online, forecast, watch.

Modules, one job each:

* :mod:`~bayes_trainmap.monitor.model` -- what a fit directory provides (:class:`MapModel`);
* :mod:`~bayes_trainmap.monitor.normalize` -- offline and online (``reference``/``prefix``) z-scoring;
* :mod:`~bayes_trainmap.monitor.decode` -- Viterbi, filtered and smoothed states of finished runs;
* :mod:`~bayes_trainmap.monitor.streaming` -- the O(K^2)-per-checkpoint filter;
* :mod:`~bayes_trainmap.monitor.forecast` -- the absorbing-chain convergence forecast;
* :mod:`~bayes_trainmap.monitor.online` -- per-run monitoring (filter + alerts + forecast);
* :mod:`~bayes_trainmap.monitor.watch` -- following a folder of growing run files;
* :mod:`~bayes_trainmap.monitor.commands` -- the ``decode`` and ``watch`` commands.
"""

import importlib

_EXPORTS = {
    "DecodeResult": "decode",
    "decode_runs": "decode",
    "Forecast": "forecast",
    "estimate_hazards": "forecast",
    "forecast_convergence": "forecast",
    "MapModel": "model",
    "load_map_model": "model",
    "RunMonitor": "online",
    "RunStatus": "online",
    "StreamingFilter": "streaming",
}

__all__ = [
    "DecodeResult",
    "Forecast",
    "MapModel",
    "RunMonitor",
    "RunStatus",
    "StreamingFilter",
    "decode_runs",
    "estimate_hazards",
    "forecast_convergence",
    "load_map_model",
]


def __getattr__(name: str):
    # lazily, so that ``python -m bayes_trainmap --help`` does not import the numerical stack
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
