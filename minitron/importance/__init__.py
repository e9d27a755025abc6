"""Importance estimation: which channels, neurons, heads and blocks matter (`minitron score`)."""

from minitron.importance.run import ScoreConfig, run

__all__ = ["ScoreConfig", "run"]
