"""Explanations: per-word attributions of the float and int8 students (and the device's own),
their faithfulness (ERASER, AOPC) and agreement with the teacher.
"""
