"""What a student model is: the recipe (every section of models/<name>.toml), the Keras
layers and graphs built from it (the CNN student, the FastGRNN and PRADO baselines,
PRADO's projection).
"""
