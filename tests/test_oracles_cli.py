"""`clutune oracles` trains every distinct oracle of a scenario on Ray once; a second call finds them cached."""

from __future__ import annotations

import pytest

from clutune.cli import main

SCENARIO = """
name: tiny-oracles
dataset: {name: digits}
model: {name: mlp, hidden: [16]}
oracle: {epochs: 3, cache_dir: CACHE}
scenario:
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - unlearn: {classes: [1]}
    - unlearn: {fraction: 0.1}
"""


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_oracles_command_trains_once_then_reports_cached(local_ray, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(SCENARIO.replace("CACHE", str(tmp_path / "oracles")))
    assert main(["oracles", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "4 distinct oracles for 4 requests; 0 already cached" in first
    assert first.count("oracle ") >= 4 and "[4/4]" in first
    entries = [p for p in (tmp_path / "oracles").iterdir() if not p.name.startswith(".") and p.name != "leases"]
    assert len(entries) == 4
    assert list((tmp_path / "oracles" / "leases").iterdir()) == []  # the training lease ends with the command
    assert main(["oracles", "--config", str(config)]) == 0
    assert "4 distinct oracles for 4 requests; 4 already cached" in capsys.readouterr().out
