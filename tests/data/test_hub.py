"""--data hf:NAME[:CONFIG][@SPLIT]: Hub datasets streamed by name (a local Hub-style repository here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minitron.data import DataSpec, _positioned, describe, documents
from minitron.errors import MinitronError
from minitron.hub_data import hub_dataset
from minitron.text_files import START

TEXTS = [f"def h{i}(z):\n    return z ** {i % 5}\n" for i in range(30)]


def test_names_configs_and_splits_are_parsed():
    assert hub_dataset("hf:HuggingFaceFW/fineweb-edu:sample-10BT@train") == (
        "HuggingFaceFW/fineweb-edu", "sample-10BT", "train",
    )  # fmt: skip
    assert hub_dataset("hf:/data/repo") == ("/data/repo", None, "train")
    assert hub_dataset("hf:org/name@validation") == ("org/name", None, "validation")
    for bad in ("hf:", "hf:org/name:", "hf:org/name@", "hf:@train"):
        with pytest.raises(MinitronError, match="expected hf:NAME"):
            DataSpec(source=bad)


def test_a_local_hub_repository_streams_every_document_in_order(hub_repo):
    repo = hub_repo(TEXTS, shards=3)
    for source in (f"hf:{repo}", f"hf:{repo}:default@train"):
        spec = DataSpec(source=source, heldout_fraction=0.2)
        assert [text for text, _ in _positioned(spec, START)] == TEXTS
        train, heldout = list(documents(spec)), list(documents(DataSpec(source=source, heldout_fraction=0.2,
                                                                        split="heldout")))  # fmt: skip
        assert sorted(train + heldout) == sorted(TEXTS) and heldout and not set(train) & set(heldout)
    record = describe(DataSpec(source=f"hf:{repo}@train"))
    assert (record["kind"], record["dataset"], record["config"], record["hub_split"]) == (
        "hub", str(repo), None, "train",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("suffix", "text_field", "message"),
    [
        ("@test", "text", "Bad split: test"),
        (":other", "text", "'other' not found"),
        ("", "body", "no column 'body'"),
    ],
)
def test_bad_split_config_or_column_is_one_line(hub_repo, suffix, text_field, message):
    spec = DataSpec(source=f"hf:{hub_repo(TEXTS)}{suffix}", text_field=text_field)
    with pytest.raises(MinitronError, match=message) as error:
        next(documents(spec))
    assert "\n" not in str(error.value)


def test_offline_and_not_cached_is_one_line_naming_the_setting(tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "minitron", "train", "tiny", "--data", "hf:nobody/nothing:x@train", "--steps", "1",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert "HF_DATASETS_OFFLINE=1" in line and str(tmp_path / "hf") in line
    assert "Traceback" not in result.stderr and not out.exists()


def test_without_datasets_installed_a_hub_source_is_refused_when_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(MinitronError, match=r"needs datasets: pip install 'minitron\[data\]'"):
        DataSpec(source="hf:org/name")
