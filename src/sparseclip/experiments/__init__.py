"""Experiments built from the library and the trainer: the demo (dense vs sparse, end to end) and the
ablation sweeps (grids, runs, summary). Like the trainer, the library never imports them."""
