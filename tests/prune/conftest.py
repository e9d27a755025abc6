import pytest
from prune_helpers import random_scores

from minitron.importance.scores import save_scores


@pytest.fixture
def scores_file(tmp_path, tiny_arch):
    """Random-but-fixed scores of every kind for the tiny architecture, saved as a scores file."""
    return save_scores(random_scores(tiny_arch, seed=3), tmp_path / "scores.safetensors")
