"""Studies that combine the layers below: the one-page HTML report of a bundle (with its
headless-browser check) and the ablation of the objective's parts.
"""
