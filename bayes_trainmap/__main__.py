"""``python -m bayes_trainmap``: see :mod:`bayes_trainmap.cli`."""

from bayes_trainmap.cli import main

raise SystemExit(main())
