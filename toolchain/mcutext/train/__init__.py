"""Training a recipe into a bundle: the three-part objective, the teacher and its cache, the
distillation transfer set, sentence embeddings, the recipe's train/dev split and the
pipeline behind `mcutext train` and `mcutext convert`.
"""
