"""Neural network architectures of the built-in tasks."""
