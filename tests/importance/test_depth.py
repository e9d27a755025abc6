import copy

import pytest
import torch
from importance_helpers import TINY, calibration_batches, padded_batches

from minitron.errors import MinitronError
from minitron.importance.depth import score_depth


def _without_blocks(model, removed):
    """Literally delete blocks: a deep copy with the layers removed and the config fixed."""
    reduced = copy.deepcopy(model)
    keep = [i for i in range(len(reduced.model.layers)) if i not in set(removed)]
    reduced.model.layers = torch.nn.ModuleList([reduced.model.layers[i] for i in keep])
    reduced.config.layers_block_type = [model.config.layers_block_type[i] for i in keep]
    return reduced


def _real_logits(model, batches):
    with torch.no_grad():
        out = []
        for ids, mask in batches:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            out.append(logits[mask.bool()] if mask is not None else logits.reshape(-1, logits.shape[-1]))
        return torch.cat(out)


def _reference(full, reduced, metric):
    if metric == "mse":
        return ((full.double() - reduced.double()) ** 2).sum() / (full.double() ** 2).sum()
    p, q = torch.log_softmax(full.double(), -1), torch.log_softmax(reduced.double(), -1)
    return (p.exp() * (p - q)).sum(-1).mean()


def _block_influence_reference(model, batches):
    """1 - cos(block input, block output) over real tokens, captured by hooks on the full forward."""
    sums, count, handles = torch.zeros(TINY.n_blocks, dtype=torch.float64), 0, []
    seen = {}
    for i, block in enumerate(model.model.layers):
        handles.append(block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, (a[0], out))))
    with torch.no_grad():
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
            real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
            for i, (inp, out) in seen.items():
                cos = torch.nn.functional.cosine_similarity(inp[real].double(), out[real].double(), dim=-1)
                sums[i] += (1 - cos).sum()
            count += int(real.sum())
    for h in handles:
        h.remove()
    return sums / count


@pytest.mark.parametrize("metric", ["mse", "kl"])
@pytest.mark.parametrize("padding", [False, True], ids=["no-padding", "padding"])
def test_one_shot_matches_deleting_each_block(model, metric, padding):
    batches = padded_batches() if padding else [(ids, None) for ids in calibration_batches(n=2)]
    got = score_depth(model, batches, metric, "one-shot")
    full = _real_logits(model, batches)
    expected = torch.stack(
        [
            _reference(full, _real_logits(_without_blocks(model, [j]), batches), metric)
            for j in range(TINY.n_blocks)
        ]
    )
    torch.testing.assert_close(got["depth.scores"].double(), expected, rtol=1e-4, atol=1e-7)
    assert got["depth.order"].tolist() == torch.sort(expected, stable=True).indices.tolist()


def test_iterative_matches_greedy_deletion(model):
    """Remove the least important block, rescore the rest against the original logits, repeat."""
    batches = [(ids, None) for ids in calibration_batches(n=1)]
    got = score_depth(model, batches, "mse", "iterative")
    full = _real_logits(model, batches)
    removed, scores = [], {}
    while len(removed) < TINY.n_blocks:
        step = {
            j: _reference(full, _real_logits(_without_blocks(model, removed + [j]), batches), "mse").item()
            for j in range(TINY.n_blocks)
            if j not in removed
        }
        least = min(step, key=lambda j: (step[j], j))
        scores[least] = step[least]
        removed.append(least)
    assert got["depth.order"].tolist() == removed
    expected = torch.tensor([scores[j] for j in range(TINY.n_blocks)], dtype=torch.float64)
    torch.testing.assert_close(got["depth.scores"].double(), expected, rtol=1e-4, atol=1e-7)
    assert sorted(removed) == list(range(TINY.n_blocks))


def test_block_influence_matches_hooked_full_forward(model):
    batches = padded_batches()
    got = score_depth(model, batches, "cosine", "one-shot")
    torch.testing.assert_close(
        got["depth.scores"].double(), _block_influence_reference(model, batches), rtol=1e-4, atol=1e-6
    )


def test_iterative_block_influence_first_removal_is_one_shot_minimum(model):
    batches = calibration_batches(n=1)
    one_shot = score_depth(model, batches, "cosine", "one-shot")
    iterative = score_depth(model, batches, "cosine", "iterative")
    first = iterative["depth.order"][0].item()
    assert first == one_shot["depth.order"][0].item()
    assert iterative["depth.scores"][first] == pytest.approx(one_shot["depth.scores"][first].item(), rel=1e-5)
    assert sorted(iterative["depth.order"].tolist()) == list(range(TINY.n_blocks))


def test_unknown_metric_and_mode_name_the_flag(model):
    with pytest.raises(MinitronError, match="--depth "):
        score_depth(model, calibration_batches(n=1), "l1", "one-shot")
    with pytest.raises(MinitronError, match="--depth-mode"):
        score_depth(model, calibration_batches(n=1), "mse", "greedy")


def test_chunked_logits_give_the_same_scores(model, monkeypatch):
    from minitron.importance import depth

    batches = padded_batches()
    expected = score_depth(model, batches, "kl", "one-shot")["depth.scores"]
    monkeypatch.setattr(depth, "LOGIT_CHUNK_TOKENS", 5)  # 38 and 21 real tokens: uneven chunks
    torch.testing.assert_close(score_depth(model, batches, "kl", "one-shot")["depth.scores"], expected)
