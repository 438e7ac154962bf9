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


def configure_tensorflow(threads: int = TRAIN_THREADS) -> None:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already initialized in this process (then the environment variables held)


def tensorflow_threads() -> dict:
    """The thread counts TensorFlow runs with in this process (0: one per core)."""
    import tensorflow as tf
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads()
            or int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0")),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()
            or int(os.environ.get("TF_NUM_INTEROP_THREADS", "0"))}
