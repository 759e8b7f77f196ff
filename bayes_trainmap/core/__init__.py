"""Contracts shared by every layer: the trajectory schema, user-facing errors, atomic
storage and executors. Nothing here imports any other part of the project."""
