import copy

import pytest
import torch
from importance_helpers import TINY, calibration_batches, padded_batches

from minitron.errors import MinitronError
from minitron.importance.depth import depth_block_runs, score_depth


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


def _count_block_runs(model):
    """A counter of block forwards (every block run, whatever code path runs it) and its hook handles."""
    counted = [0]
    handles = [
        block.register_forward_pre_hook(lambda *_: counted.__setitem__(0, counted[0] + 1))
        for block in model.model.layers
    ]
    return counted, handles


def _runs_formula(n: int, iterations: int) -> int:
    """Block runs per batch of iterative MSE stopped after `iterations` removals, written out: step s
    (s = 0..iterations) runs the reduced model once (n - s), the full model once more for the reference
    logits when reduced (n), and the suffix after each of the n - s kept blocks (sum of 0..n-s-1)."""
    return sum(
        (n - s) + (n if s else 0) + (n - s) * (n - s - 1) // 2 for s in range(min(iterations, n - 1) + 1)
    )


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_depth_iterations_are_greedy_for_n_blocks_then_one_shot_on_the_reduced_model(model, iterations):
    """`--depth-iterations N`: the first N removals are full iterative's; the rest are ordered by their
    score on the model reduced by those N (against the original logits), ties to the lower index."""
    batches = [(ids, None) for ids in calibration_batches(n=1)]
    n = TINY.n_blocks
    full = score_depth(model, batches, "mse", "iterative")["depth.order"].tolist()
    advanced = []
    counted, handles = _count_block_runs(model)
    got = score_depth(model, batches, "mse", "iterative", advanced.append, iterations)
    for h in handles:
        h.remove()
    order = got["depth.order"].tolist()
    assert order[:iterations] == full[:iterations]
    removed = order[:iterations]
    reference = _real_logits(model, batches)
    rest = {
        j: _reference(reference, _real_logits(_without_blocks(model, removed + [j]), batches), "mse").item()
        for j in range(n)
        if j not in removed
    }
    assert order[iterations:] == sorted(rest, key=lambda j: (rest[j], j))
    for j, value in rest.items():
        assert got["depth.scores"][j].item() == pytest.approx(value, rel=1e-4, abs=1e-7)
    # the work: N + 1 steps, counted by the progress callback as the blocks really ran
    assert counted[0] == sum(advanced) == _runs_formula(n, iterations) * len(batches)
    assert counted[0] == depth_block_runs(n, "iterative", "mse", iterations) * len(batches)
    assert len(advanced) == (iterations + 1) * len(batches)


def test_depth_iterations_zero_is_one_shot_and_n_or_more_is_full_iterative(model):
    batches = calibration_batches(n=1)
    n = TINY.n_blocks
    one_shot = score_depth(model, batches, "mse", "one-shot")
    full = score_depth(model, batches, "mse", "iterative")
    zero = score_depth(model, batches, "mse", "iterative", iterations=0)
    assert zero["depth.order"].tolist() == one_shot["depth.order"].tolist()
    torch.testing.assert_close(zero["depth.scores"], one_shot["depth.scores"])
    for iterations in (n - 1, n, 10 * n):  # the last block needs no step of its own
        got = score_depth(model, batches, "mse", "iterative", iterations=iterations)
        assert got["depth.order"].tolist() == full["depth.order"].tolist()
        torch.testing.assert_close(got["depth.scores"], full["depth.scores"])
    assert depth_block_runs(n, "iterative", "mse", 10 * n) == depth_block_runs(n, "iterative", "mse")
    with pytest.raises(MinitronError, match="^--depth-iterations must be 0 or more, got -1$"):
        score_depth(model, batches, "mse", "iterative", iterations=-1)


def test_depth_iterations_cost_on_the_62_block_nano_pattern():
    """The issue's arithmetic: iterative scoring of 62 blocks stopped after 6 costs about N n^2/2 block
    runs instead of about n^3/6 (per batch; LM head projections not counted)."""
    n, stop = 62, 6
    full, stopped = depth_block_runs(n, "iterative", "mse"), depth_block_runs(n, "iterative", "mse", stop)
    assert full == _runs_formula(n, n) and stopped == _runs_formula(n, stop)
    assert 1.0 <= full / (n**3 / 6) < 1.2 and 1.0 <= stopped / (stop * n**2 / 2) < 1.2
    assert 0.25 < stopped / full < 0.33  # about 3 N / n
    assert depth_block_runs(n, "one-shot", "mse") == n + n * (n - 1) // 2
