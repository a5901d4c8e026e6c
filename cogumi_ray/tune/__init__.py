"""Ray Tune searches: compression sparsity (sparsity.py) and router thresholds."""
