"""The one atomic writer: strict JSON, readable modes."""

from __future__ import annotations

import json
import math
import os

from minitron.atomic import json_text, make_temp_dir, write_json


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null(tmp_path):
    data = {"ratio": math.inf, "low": -math.inf, "x": math.nan, "rows": [1.5, math.inf, {"y": math.nan}]}
    assert _strict(json_text(data)) == {
        "ratio": None,
        "low": None,
        "x": None,
        "rows": [1.5, None, {"y": None}],
    }
    path = write_json(tmp_path / "s.json", data, sort_keys=True)
    assert _strict(path.read_text())["ratio"] is None


def test_temp_dir_has_mkdir_mode(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    assert make_temp_dir(prefix=".x.", dir=tmp_path).stat().st_mode & 0o777 == 0o777 & ~umask
