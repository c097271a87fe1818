"""Comparing evaluated runs: paired per-case statistics (`dentpy compare`) and
leaderboards with baselines (`dentpy benchmark`)."""
