"""The package's version: in generated files' banners, bundles' manifests and `--version`."""

__version__ = "0.1.0"
