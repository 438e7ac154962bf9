"""int8 TFLite model -> C: the graph reader, the lowering of each op family to the kernels of
firmware/kernels/ (one module per family, as the kernels are), the static memory plan, and
the emitted model.c / weights.c / model_gen.h / head and encoding tables.
"""
