"""Recording (and monitoring) from the training loops most users have.

* :class:`bayes_trainmap.integrations.lightning.TrainMapCallback` -- PyTorch Lightning
  (``pip install "bayes_trainmap[lightning]"``);
* :class:`bayes_trainmap.integrations.huggingface.TrainMapCallback` -- the Hugging Face
  ``Trainer`` (``pip install "bayes_trainmap[transformers]"``).

Both record the 14 weight statistics every ``every`` optimiser steps with
:class:`bayes_trainmap.tasks.recorder.TrajectoryRecorder` (so the run file is the same format,
append-as-you-go, readable by ``watch``) together with the outcomes the loop already
logs, and can monitor the run against a fitted map.
"""
