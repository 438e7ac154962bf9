"""Library chatter kept off the user's stderr: TensorFlow's C++ log lines (some of which ignore
TF_CPP_MIN_LOG_LEVEL), absl, Keras and Python warnings from those libraries.

The `mcutext` command calls setup() once, before anything imports TensorFlow; with --verbose
it is not called and everything shows. What the project itself prints (progress bars,
`progress.log`, errors) is untouched. Library code imported from Python is not affected
unless setup() was called.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import sys
import warnings

# top-level packages whose import writes log lines straight to file descriptor 2
NOISY_IMPORTS = ("tensorflow",)
LIBRARIES = ("tensorflow", "keras", "tf_keras", "absl", "ai_edge_litert", "tflite_micro",
             "google.protobuf", "h5py")
_active = False


def setup() -> None:
    """Quiet the libraries for the rest of the process (idempotent)."""
    global _active
    if _active:
        return
    _active = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    pattern = r"(" + "|".join(m.replace(".", r"\.") for m in LIBRARIES) + r")(\.|$)"
    warnings.filterwarnings("ignore", module=pattern)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    sys.meta_path.insert(0, _QuietImporter())


def active() -> bool:
    return _active


@contextlib.contextmanager
def fd_to_devnull(fd: int):
    """Point file descriptor `fd` (1 or 2) at /dev/null meanwhile: output that C++ code
    writes there directly, which Python's redirections cannot catch."""
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def library_stderr():
    """A context in which a library's native stderr output is dropped (when setup() ran)."""
    return fd_to_devnull(2) if _active else contextlib.nullcontext()


class _QuietLoader(importlib.abc.Loader):
    """The package's own loader (everything else it offers, e.g. resource readers, passes
    through), executing the module with file descriptor 2 pointed at /dev/null."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with library_stderr():
            self._loader.exec_module(module)


class _QuietImporter(importlib.abc.MetaPathFinder):
    """Imports NOISY_IMPORTS with file descriptor 2 pointed at /dev/null."""

    def find_spec(self, name, path, target=None):
        if name not in NOISY_IMPORTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None
