"""`minitron run CONFIG.toml` and `minitron demo`: the whole job, score -> search -> compare -> prune ->
distill (-> lm-eval benchmarks with eval-tasks), from one file, into one run directory, resumable
stage by stage, ending in a report.

config.py   the TOML file -> each stage's options (keys are the commands' own option names)
stages.py   which stages, their inputs and outputs, when a stage can be skipped; every stage's config
            is built and checked before the first stage runs, then each runs in this process
report.py   report.md and the terminal summary (losses, generations, tables, plots)
"""

from minitron.pipeline.config import RunConfig, load_run_config
from minitron.pipeline.stages import run_pipeline

__all__ = ["RunConfig", "load_run_config", "run_pipeline"]
