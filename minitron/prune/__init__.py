"""Pruning: slice a checkpoint to a target architecture (depth and width), write a HF checkpoint.

target.py   what to keep: flags or a search candidate -> target Architecture + kept blocks
select.py   which units: rank each narrowed axis with the scores, keep the top (original order)
slicing.py  which rows/columns of every weight; in-memory pruning (prune_model)
writer.py   lazy shard reading, streaming shard writing, atomic output directory
run.py      PruneConfig -> run(): the `minitron prune` command
"""

from minitron.prune.run import PruneConfig, PruneResult, run

__all__ = ["PruneConfig", "PruneResult", "run"]
