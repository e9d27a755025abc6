import itertools

import pytest
import torch

from minitron.errors import MinitronError
from minitron.importance.ranking import rank_attention_heads, rank_mamba, top_k


def test_top_k_keeps_highest_sorted_and_breaks_ties_to_lower_index():
    scores = torch.tensor([0.5, 2.0, 0.5, 3.0, 0.5])
    assert top_k(scores, 2).tolist() == [1, 3]
    assert top_k(scores, 3).tolist() == [0, 1, 3]
    assert top_k(scores, 5).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("k", [0, 6])
def test_top_k_rejects_impossible_counts(k):
    with pytest.raises(MinitronError, match="cannot keep"):
        top_k(torch.ones(5), k)


def test_attention_heads_keep_same_count_per_kv_group():
    # 8 query heads, 2 KV groups of 4: the best 4 overall are all in group 0, GQA needs 2 + 2.
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 1.0, 3.0, 2.0, 0.5])
    assert rank_attention_heads(scores, 4, 2).tolist() == [0, 1, 5, 6]
    assert rank_attention_heads(scores, 8, 2).tolist() == list(range(8))
    with pytest.raises(MinitronError, match="multiple of 2"):
        rank_attention_heads(scores, 3, 2)


def _mamba_reference(s, keep_heads, keep_dim, groups):
    """Plain python: channel score = L2 over heads; head score = L2 over kept channels; per group."""
    heads, dim = len(s), len(s[0])
    channel = [sum(s[h][d] ** 2 for h in range(heads)) ** 0.5 for d in range(dim)]
    channels = sorted(sorted(range(dim), key=lambda d: -channel[d])[:keep_dim])
    head = [sum(s[h][d] ** 2 for d in channels) ** 0.5 for h in range(heads)]
    per = heads // groups
    kept = []
    for g in range(groups):
        members = list(range(g * per, (g + 1) * per))
        kept += sorted(members, key=lambda h: -head[h])[: keep_heads // groups]
    return sorted(kept), channels


@pytest.mark.parametrize("seed", range(5))
def test_rank_mamba_matches_plain_python(seed):
    s = torch.rand(8, 6, generator=torch.Generator().manual_seed(seed))
    for keep_heads, keep_dim in itertools.product([2, 4, 6, 8], [1, 3, 6]):
        heads, channels = rank_mamba(s, keep_heads, keep_dim, groups=2)
        ref_heads, ref_channels = _mamba_reference(s.tolist(), keep_heads, keep_dim, 2)
        assert heads.tolist() == ref_heads
        assert channels.tolist() == ref_channels


def test_rank_mamba_heads_are_scored_on_kept_channels_only():
    # Head 1 is loud only on channel 2, which loses the channel ranking; then head 0 must win group 0.
    s = torch.tensor([[1.0, 1.0, 0.0], [0.1, 0.1, 4.0], [4.0, 4.0, 0.0], [5.0, 5.0, 0.0]])
    heads, channels = rank_mamba(s, keep_heads=2, keep_head_dim=2, groups=2)
    assert channels.tolist() == [0, 1]
    assert heads.tolist() == [0, 3]


def test_rank_mamba_rejects_uneven_group_counts():
    with pytest.raises(MinitronError, match="multiple of 2"):
        rank_mamba(torch.rand(8, 4), keep_heads=3, keep_head_dim=4, groups=2)
