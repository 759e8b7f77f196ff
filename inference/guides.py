"""Names of the variational families of the Bayesian fit (no Pyro import, so the CLI can list them)."""

#: ``"auto"`` picks full rank (``"mvn"``) for small models, else ``"lowrank"``.
GUIDES: tuple[str, ...] = ("auto", "normal", "lowrank", "mvn")
