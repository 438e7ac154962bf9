"""How TensorFlow runs for training, so that the same recipe, seed and machine give the same
bundle byte for byte (docs/model.md). Light on purpose: importing it does not start
TensorFlow, so the environment is in place before anything does.

TensorFlow's CPU kernels split reductions by their thread count, so the same training on
another number of threads gives slightly different weights (measured: 1, 2, 4 and 8 threads
give four different int8 models). Training runs on TRAIN_THREADS threads (both pools),
whatever the machine's core count, with op determinism on (an op without a deterministic
kernel raises instead of varying).
"""

from __future__ import annotations

import os

TRAIN_THREADS = 2


def pin_environment() -> None:
    """For a TensorFlow not started yet in this process: the thread counts and op
    determinism of training (variables already set are left alone)."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(TRAIN_THREADS))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(TRAIN_THREADS))
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
