"""Run directories: one process per folder (lock), atomic creation, advice that matches what --resume does,
stale resume-state temporaries removed, and no hash key in any output of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from resnet_apps.errors import RunDirError, RunLockedError
from resnet_apps.train.run import LoopState
from resnet_apps.train.rundir import (
    LOCK_NAME,
    check_resumable,
    lock_run_dir,
    new_run_dir,
    refuse_existing,
    release_run_dir,
)
from resnet_apps.train.state import STATE_NAME, load_state, save_state

REPO = Path(__file__).resolve().parents[2]
HOLDER = textwrap.dedent(
    """
    import sys, time
    from resnet_apps.train.rundir import lock_run_dir
    lock_run_dir(sys.argv[1])
    print("LOCKED", flush=True)
    time.sleep(120)
    """
)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _resumable(root: Path) -> Path:
    """A run directory with a recipe and a (placeholder) resume state: what --resume accepts."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "recipe.yaml").write_text("name: x\n")
    (root / "checkpoints" / STATE_NAME).write_bytes(b"state")
    return root


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start a process that locks a folder and keeps running; yields (folder, process)."""
    run = _resumable(tmp_path / "run")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "LOCKED"
    yield run, child
    if child.poll() is None:
        child.kill()
    child.wait(timeout=30)
    child.stdout.close()


def test_second_process_is_refused_naming_the_pid_then_a_dead_holder_frees_it(holder) -> None:  # type: ignore[no-untyped-def]
    run, child = holder
    with pytest.raises(RunLockedError, match=rf"process {child.pid} on .* is training in this run directory"):
        check_resumable(run)
    child.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel drops the lock with the process
    child.wait(timeout=30)
    assert (run / LOCK_NAME).exists()  # the file stays behind ...
    assert check_resumable(run) == run  # ... and is taken over at once
    assert f"process {os.getpid()} " in (run / LOCK_NAME).read_text()
    release_run_dir(run)
    assert not (run / LOCK_NAME).exists()


def test_two_resume_commands_on_one_run(holder) -> None:  # type: ignore[no-untyped-def]
    run, child = holder
    result = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "train", "--resume", str(run)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 2
    assert f"process {child.pid} on" in result.stderr and "is training in this run directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_out_being_set_up_by_another_run_is_refused(tmp_path: Path) -> None:
    # the other run made and locked the folder but has not written anything yet: an empty --out
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "LOCKED"
        with pytest.raises(RunLockedError, match=f"process {child.pid} "):
            new_run_dir("x", out=out)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout:
            child.stdout.close()


def test_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    lock_run_dir(tmp_path)
    lock_run_dir(tmp_path)  # the same process may resume its own run again
    release_run_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_new_run_dir_is_created_and_locked_atomically(tmp_path: Path) -> None:
    first = new_run_dir("demo", runs_root=tmp_path)
    second = new_run_dir("demo", runs_root=tmp_path)  # same second: a new folder, never the same one
    assert first != second and second.name.startswith(first.name)
    assert (first / LOCK_NAME).is_file() and (second / LOCK_NAME).is_file()
    out = new_run_dir("demo", out=tmp_path / "explicit")
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    for path in (first, second, out):
        release_run_dir(path)


def test_advice_matches_what_resume_does(tmp_path: Path) -> None:
    # a run that failed on its data in the first epoch: recipe and split written, no resume state
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "recipe.yaml").write_text("name: x\n")
    (stopped / "split.json").write_text("{}")
    with pytest.raises(RunDirError) as retry:
        refuse_existing(stopped)
    assert "--resume" not in str(retry.value) and "delete that folder" in str(retry.value)
    with pytest.raises(RunDirError) as resume:
        check_resumable(stopped)
    assert "stopped before its first checkpoint" in str(resume.value) and "delete that folder" in str(
        resume.value
    )
    # a run with a resume state: retrying points at --resume, and --resume accepts it
    resumable = _resumable(tmp_path / "resumable")
    with pytest.raises(RunDirError, match=f"continue it with --resume {resumable}"):
        refuse_existing(resumable)
    assert check_resumable(resumable) == resumable
    release_run_dir(resumable)
    # other files: neither
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(RunDirError, match="not an empty folder") as plain:
        refuse_existing(other)
    assert "--resume" not in str(plain.value)


def test_resume_removes_the_temporaries_of_a_killed_state_write(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    ckpt = tmp_path / "checkpoints"
    save_state(ckpt, model, optimizer, LoopState(epoch=2, step=5))
    # what a SIGKILL during the next save leaves: this version's name and the older mkstemp name
    stale = [ckpt / f".{STATE_NAME}.k3j2h1.tmp", ckpt / "tmpa1b2c3.tmp"]
    for path in stale:
        with open(path, "wb") as handle:
            handle.truncate(128 << 20)  # 128 MiB, sparse
    loop = load_state(ckpt, torch.nn.Linear(3, 2), torch.optim.AdamW(model.parameters()))
    assert (loop.epoch, loop.step) == (2, 5)
    assert sorted(p.name for p in ckpt.iterdir()) == [STATE_NAME]
