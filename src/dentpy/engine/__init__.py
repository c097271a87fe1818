"""The generic training machinery: sampling, the loop, checkpoints, logging."""
