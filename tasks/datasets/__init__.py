"""Data sets of the built-in tasks, and writers of small fixtures in their real on-disk formats."""
