"""Training tasks on one shared torch training loop, weight statistics and the recorder hook."""
