"""Text in: the labelled datasets (TSV/CSV/JSONL), the hashing tokenizer (the specification
the C tokenizer follows), the robust word encoding, the teacher's WordPiece, and the
character and word edits that attacks and adversarial training make.
"""
