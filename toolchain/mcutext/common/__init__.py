"""Shared by every layer, knowing nothing of models: the error type, progress bars and log
lines, quieting TensorFlow, deterministic TensorFlow threads, the --out rule and atomic
publishing of outputs, resumable journals, the version.
"""
