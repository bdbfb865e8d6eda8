"""A training run's outputs hold keyed hashes only: the key itself appears in no file of the run."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # train_fixtures beside the other tests
from train_fixtures import make_geotiff_folder, write_recipe  # noqa: E402

from resnet_apps.data.records import hash_id  # noqa: E402
from resnet_apps.io.atomic import output_mode  # noqa: E402


def test_no_key_in_any_output_and_ids_are_keyed_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnet_apps.train.loop import train
    from resnet_apps.train.rundir import release_run_dir

    monkeypatch.delenv("RESNET_APPS_HASH_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the key file is created by the run
    torch.set_num_threads(1)
    recipe = write_recipe(
        tmp_path / "tiny.yaml", make_geotiff_folder(tmp_path / "data", per_class=4), train={"epochs": 1}
    )
    run = train(recipe, out=tmp_path / "run", log=lambda *a, **k: None)
    release_run_dir(run)
    key = (tmp_path / "config" / "resnet_apps" / "hash.key").read_text().strip()
    assert len(key) == 64
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and bytes.fromhex(key) not in data, path
    # outputs are readable as the umask allows (mkstemp alone made them 0600)
    for name in ("metrics.json", "split.json", "report.md", "checkpoints/best.safetensors"):
        assert stat.S_IMODE((run / name).stat().st_mode) == output_mode(), name
    ids = json.loads((run / "metrics.json").read_text())["evaluation"]["samples"]["ids"]
    split = json.loads((run / "split.json").read_text())
    test_paths = split["records"]["test"]
    paths = [r if isinstance(r, str) else r["path"] for r in test_paths]
    assert sorted(ids) == sorted(hash_id(p) for p in paths)  # HMAC under the file's key, not a public salt
