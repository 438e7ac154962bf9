"""The teacher: a pretrained sentence encoder with a classification head, trained once per
recipe and cached; its logits and word attributions are what the student distills."""
