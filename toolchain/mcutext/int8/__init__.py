"""The bundle and its int8 model: Keras -> full-integer TFLite (checked in the TFLite Micro
interpreter), reading and writing a bundle folder, and evaluating it with the keras, tflm or
litert runtime.
"""
