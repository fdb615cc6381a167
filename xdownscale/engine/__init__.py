"""Training loop, checkpoints and tiled inference."""
