"""mcutext: robust, explainable text classifiers for Cortex-M microcontrollers."""

__version__ = "0.1.0"


def load_bundle(path):
    """Load a trained model bundle; see mcutext.int8.bundle.Bundle."""
    from .int8.bundle import load_bundle as _load
    return _load(path)


__all__ = ["__version__", "load_bundle"]
