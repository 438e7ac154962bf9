"""Robustness: the char- and word-level attacks against any runtime (keras, litert, tflm or a
device) and certification that no small edit flips a prediction.
"""
