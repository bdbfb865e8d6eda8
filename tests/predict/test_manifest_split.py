"""Scene manifests: parsing, keys, and the deterministic split between --shard workers and torchrun ranks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from resnet_apps.errors import ManifestError
from resnet_apps.predict.manifest import (
    Shard,
    entry_kind,
    manifest_entries,
    parse_shard,
    read_manifest,
    torchrun_shard,
    worker_shard,
)

SOURCES = [f"/data/scenes/T31UDQ_{n:03d}.tif" for n in range(23)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0/1", Shard(0, 1)),  # one worker takes everything
        ("3/4", Shard(3, 4)),  # the last of four (0-based)
        (" 2 / 10 ", Shard(2, 10)),  # spaces from a shell template are tolerated
    ],
)
def test_parse_shard_accepts_zero_based_index_over_count(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "4/4",
            r"INDEX must be in 0\.\.3 \(shards are 0-based\).*SLURM_ARRAY_TASK_ID - 1",
        ),  # 1-based by mistake
        ("-1/4", r"INDEX must be in 0\.\.3"),  # negative index
        ("0/0", r"COUNT must be at least 1"),  # no workers
        ("1", r"expected INDEX/COUNT such as 0/4"),  # no count
        ("a/b", r"expected INDEX/COUNT"),  # not numbers
        ("/4", r"expected INDEX/COUNT"),  # an unset $SLURM_ARRAY_TASK_ID expands to nothing
    ],
)
def test_parse_shard_refuses_bad_specs_with_a_typed_error(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_shard(text)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 23, 30])
def test_every_entry_goes_to_exactly_one_shard_and_shares_differ_by_at_most_one(count: int) -> None:
    entries = manifest_entries(SOURCES)
    shares = [Shard(i, count).take(entries) for i in range(count)]
    taken = [e.source for share in shares for e in share]
    assert sorted(taken) == sorted(SOURCES) and len(taken) == len(set(taken)) == 23
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_the_split_does_not_depend_on_line_order_duplicates_or_comments() -> None:
    shuffled = SOURCES[:]
    random.Random(7).shuffle(shuffled)
    noisy = ["# scenes of 2024", "", *shuffled[:5], SOURCES[0] + "  # again", *shuffled[5:], "   "]
    a, b = manifest_entries(SOURCES), manifest_entries(noisy)
    assert a == b  # same entries, same order, same keys
    for i in range(3):
        assert Shard(i, 3).take(a) == Shard(i, 3).take(b)
    # sorted order, round robin: worker 1 of 3 takes sorted entries 1, 4, 7, ...
    assert [e.source for e in Shard(1, 3).take(a)] == sorted(SOURCES)[1::3]


def test_shard_and_torchrun_rank_combine_into_one_worker_index() -> None:
    # a Slurm array of 3 nodes, each running torchrun with 2 ranks: 6 workers
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert worker_shard(Shard(2, 3), env) == Shard(5, 6)
    assert worker_shard(None, env) == Shard(1, 2)  # torchrun alone
    assert worker_shard(Shard(2, 3), {}) == Shard(2, 3)  # --shard alone
    assert worker_shard(None, {}) == Shard(0, 1)  # one process: everything
    workers = [
        worker_shard(Shard(i, 3), {"RANK": str(r), "WORLD_SIZE": "2"}) for i in range(3) for r in range(2)
    ]
    assert sorted(w.index for w in workers) == list(range(6)) and {w.count for w in workers} == {6}


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "x", "WORLD_SIZE": "2"},  # not an integer
        {"RANK": "2", "WORLD_SIZE": "2"},  # rank outside the world
    ],
)
def test_inconsistent_torchrun_variables_are_a_typed_error(env: dict[str, str]) -> None:
    with pytest.raises(ManifestError, match="RANK"):
        torchrun_shard(env)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("/data/a.tif", "local"),
        ("scene.TIFF", "local"),
        ("https://example.org/cogs/a.tif?token=1", "url"),  # a query string does not hide the suffix
        ("s3://bucket/a.tif", "url"),
        ("/vsicurl/https://example.org/a.tif", "url"),
        ("https://stac.example.org/v1/collections/s2/items/S2B_31UDQ_20240601", "stac_item"),  # STAC API item
        ("https://example.org/catalog/item.json", "stac_item"),
        ("items/S2B_31UDQ.json", "stac_item"),  # a local item file
    ],
)
def test_entry_kinds(source: str, kind: str) -> None:
    assert entry_kind(source) == kind


def test_keys_are_stems_and_clashing_stems_get_a_hash_suffix() -> None:
    entries = manifest_entries(
        [
            "https://stac.example.org/v1/collections/s2/items/S2B_31UDQ_20240601",
            "https://example.org/2024-01/scene.tif",
            "https://example.org/2024-02/scene.tif",
            "/data/other.v2.tif",
        ]
    )
    keys = {e.source: e.key for e in entries}
    assert keys["https://stac.example.org/v1/collections/s2/items/S2B_31UDQ_20240601"] == "S2B_31UDQ_20240601"
    assert keys["/data/other.v2.tif"] == "other.v2"
    clashing = [keys["https://example.org/2024-01/scene.tif"], keys["https://example.org/2024-02/scene.tif"]]
    assert all(k.startswith("scene-") and len(k) == len("scene-") + 8 for k in clashing)
    assert clashing[0] != clashing[1]


def test_read_manifest_resolves_relative_paths_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "scenes.txt"
    manifest.write_text("# local scenes\n./../scenes/a.tif\n/abs/b.tif\nhttps://example.org/c.tif\n")
    entries = read_manifest(manifest)
    # sorted by the text as written (normalised), which is the same on every machine whatever the mount point
    assert [e.text for e in entries] == ["../scenes/a.tif", "/abs/b.tif", "https://example.org/c.tif"]
    assert [e.source for e in entries] == [
        str(tmp_path / "scenes" / "a.tif"),
        "/abs/b.tif",
        "https://example.org/c.tif",
    ]


def test_read_manifest_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"absent\.txt: cannot read the manifest"):
        read_manifest(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(
        ManifestError, match=r"empty\.txt: no scene in the manifest; fix: one path or URL a line"
    ):
        read_manifest(empty)


@pytest.mark.parametrize(
    ("device", "local_rank", "expected"),
    [
        ("cuda", "1", "cuda:1"),  # torchrun: one GPU per rank
        ("cuda", None, "cuda"),  # no torchrun: as given
        ("cuda:0", "1", "cuda:0"),  # an explicit GPU is kept
        ("cpu", "1", "cpu"),  # CPU ranks share the CPU
    ],
)
def test_torchrun_ranks_get_their_local_gpu(
    monkeypatch: pytest.MonkeyPatch, device: str, local_rank: str | None, expected: str
) -> None:
    from resnet_apps.cli.predict_manifest import torchrun_device

    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert torchrun_device(device) == expected


def test_split_and_keys_do_not_depend_on_where_the_data_is_mounted() -> None:
    lines = ["2024-01/scene.tif", "2024-02/scene.tif", "other.tif", "/archive/x.tif"]
    here, there = (
        manifest_entries(lines, base=Path("/mnt/a")),
        manifest_entries(lines, base=Path("/scratch/b")),
    )
    assert [(e.text, e.key) for e in here] == [(e.text, e.key) for e in there]
    assert [e.text for e in here] == ["/archive/x.tif", "2024-01/scene.tif", "2024-02/scene.tif", "other.tif"]
    assert here[1].source == "/mnt/a/2024-01/scene.tif" and there[1].source == "/scratch/b/2024-01/scene.tif"
    assert [e.text for e in Shard(0, 2).take(here)] == [e.text for e in Shard(0, 2).take(there)]
