"""Run a whole degradation study: every depth x {plain, residual} x seed, then study.json and the report.

Layout of the output folder::

    OUT/data.safetensors + data.json   the standardised 32-px images and split (written once, reused on resume)
    OUT/runs/<net>_seed<s>/            state.safetensors (resume point) and record.json per run
    OUT/study.json                     every record, the summary over seeds, the ordering found
    OUT/report.html, fig6.png, gradnorm.png

``timing.wall_seconds`` in study.json runs from the first start (config.json) to the last saved epoch, so
it counts every session of a resumed study and the pauses between them.

With one job, runs go seed by seed (seed 0 of every network first), so a study stopped early still
holds complete comparisons. ``jobs > 1`` trains that many runs at once in separate processes (``threads``
torch threads each), longest remaining run first, which finishes soonest.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from resnet_apps.errors import RunDirError
from resnet_apps.study.data import load_study_data
from resnet_apps.study.degradation import STATE_FILE, Protocol, RunSpec, load_record, train_run
from resnet_apps.study.summary import summarize

DATA_FILE = "data.safetensors"
STUDY_FILE = "study.json"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study (saved as config.json; ``--resume`` reads it back)."""

    data_root: str
    depths: tuple[int, ...] = (20, 56)
    seeds: tuple[int, ...] = (0, 1, 2)
    protocol: Protocol = field(default_factory=Protocol)
    test_fraction: float = 0.2
    split_seed: int = 0
    threads: int = 1
    jobs: int = 1

    def specs(self) -> list[RunSpec]:
        return [
            RunSpec(depth, residual, seed)
            for seed in self.seeds
            for depth in self.depths
            for residual in (False, True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyConfig:
        return cls(
            data_root=raw["data_root"],
            depths=tuple(raw["depths"]),
            seeds=tuple(raw["seeds"]),
            protocol=Protocol(**raw["protocol"]),
            test_fraction=float(raw["test_fraction"]),
            split_seed=int(raw["split_seed"]),
            threads=int(raw.get("threads", 1)),
            jobs=int(raw.get("jobs", 1)),
        )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1)
    os.replace(tmp, path)


def prepare_data(config: StudyConfig, out: Path) -> dict[str, Any]:
    """Read and split the images once into OUT/data.safetensors (kept on resume); returns data.json."""
    from safetensors.torch import save_file

    meta_path = out / "data.json"
    if (out / DATA_FILE).is_file() and meta_path.is_file():
        return dict(json.loads(meta_path.read_text(encoding="utf-8")))
    data = load_study_data(config.data_root, config.test_fraction, config.split_seed)
    tensors = {k: getattr(data, k) for k in ("train_x", "train_y", "test_x", "test_y")}
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp)
    os.replace(tmp, out / DATA_FILE)
    described = data.describe()
    _write_json(meta_path, described)
    return described


def _load_tensors(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / DATA_FILE))


def _worker(spec: RunSpec, protocol: Protocol, out: str, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return train_run(spec, protocol, _load_tensors(Path(out)), Path(out) / "runs" / spec.name, log=_log)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _log(line: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {line}", flush=True)


def run_study(
    config: StudyConfig, out: str | Path, resume: bool = False, log: Callable[[str], None] = _log
) -> Path:
    """Train every run of ``config`` (continuing saved ones when ``resume``), write study.json and the report.

    Raises:
        RunDirError: OUT already holds a study and ``resume`` is False, or the saved config differs.
    """
    out = Path(out)
    config_path = out / CONFIG_FILE
    if config_path.is_file() and not resume:
        raise RunDirError(
            f"{out}: already holds a study; pass --resume {out} to continue it, or choose a new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not config_path.is_file():
        _write_json(config_path, {**config.to_dict(), "started": _now()})
    started = time.perf_counter()
    data_meta = prepare_data(config, out)
    log(f"data: {data_meta['n_train']} train / {data_meta['n_test']} test images, {data_meta['split']}")
    pending = [s for s in config.specs() if _epochs_done(out, s) < config.protocol.epochs]
    if config.jobs > 1 and len(pending) > 1:
        # longest remaining work first (depth x epochs left): the shortest makespan over parallel workers
        pending.sort(key=lambda s: -s.depth * (config.protocol.epochs - _epochs_done(out, s)))
        context = get_context("spawn")  # no forked torch thread pools
        # Pool.__exit__ terminates the workers: an error or a stop (SIGTERM is turned into SystemExit
        # below) never leaves orphans that keep training and writing states
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            with context.Pool(processes=config.jobs) as pool:
                results = [
                    pool.apply_async(_worker, (s, config.protocol, str(out), config.threads)) for s in pending
                ]
                for result in results:
                    result.get()
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        torch.set_num_threads(config.threads)
        tensors = _load_tensors(out)
        for spec in pending:
            train_run(spec, config.protocol, tensors, out / "runs" / spec.name, log=log)
    return write_study(config, out, data_meta, time.perf_counter() - started)


def _epochs_done(out: Path, spec: RunSpec) -> int:
    record = load_record(out / "runs" / spec.name)
    return 0 if record is None else len(record["history"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_study(config: StudyConfig, out: Path, data_meta: dict[str, Any], session_seconds: float) -> Path:
    """Assemble OUT/study.json from the run records, then OUT/report.html and its figures."""
    from resnet_apps.study.report import write_report

    records = [r for s in config.specs() if (r := load_record(out / "runs" / s.name)) is not None]
    networks: dict[str, Any] = {}
    for record in records:
        spec = record["spec"]
        entry = networks.setdefault(
            record["net"],
            {"depth": spec["depth"], "residual": spec["residual"], "params": record["params"], "seeds": {}},
        )
        entry["seeds"][str(spec["seed"])] = {
            k: record[k] for k in ("history", "grad_profile") if k in record
        } | {"diverged": bool(record.get("diverged", False))}
    train_seconds = sum(h["seconds"] for r in records for h in r["history"])
    elapsed = _elapsed_since_start(out)
    doc = {
        "kind": "degradation_study",
        "config": config.to_dict(),
        "data": data_meta,
        "networks": networks,
        "summary": summarize(networks, config.protocol.epochs),
        "timing": {
            "train_seconds_summed": round(train_seconds, 1),
            "wall_seconds": round(elapsed if elapsed is not None else session_seconds, 1),
            "last_session_seconds": round(session_seconds, 1),
            "jobs": config.jobs,
            "threads_per_job": config.threads,
            "cpu": _cpu_name(),
        },
        "command": " ".join(["resnet-apps", *sys.argv[1:]]) if sys.argv[1:] else None,
        "written": _now(),
    }
    _write_json(out / STUDY_FILE, doc)
    write_report(doc, out)
    return out / STUDY_FILE


def _elapsed_since_start(out: Path) -> float | None:
    """Seconds from the study's first start (config.json) to its last saved epoch.

    Counts every session of a resumed study and the pauses between them; re-writing study.json later
    does not change it (the end is the newest run state's modification time).
    """
    try:
        raw = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
        started = datetime.fromisoformat(raw["started"]).timestamp()
        ends = [p.stat().st_mtime for p in (out / "runs").glob(f"*/{STATE_FILE}")]
    except (OSError, KeyError, ValueError):
        return None
    return max(ends) - started if ends else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """'20,56' -> (20, 56); ValueError naming the flag otherwise."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise ValueError(f"{name}: expected comma-separated integers like 20,56, got {text!r}") from error
    if not values:
        raise ValueError(f"{name}: empty list")
    return values
