"""io.identity: one keyed hash (HMAC-SHA256) for patients, groups and file ids; the key stays secret."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_apps.data.records import hash_id
from resnet_apps.errors import HashKeyError
from resnet_apps.io import hash_identifier
from resnet_apps.io.identity import key_file, keyed_hash

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key in the environment and an empty config folder: the key file is made on first use."""
    monkeypatch.delenv("RESNET_APPS_HASH_KEY", raising=False)
    monkeypatch.delenv("RESNET_APPS_HASH_SALT", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "resnet_apps" / "hash.key"


def test_stable_under_one_key_different_under_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_APPS_HASH_KEY", "site-A-0123456789abcdef")
    first = hash_id("patient 00012")
    assert first == hash_id("patient 00012") and len(first) == 16
    # exactly HMAC-SHA256 under the key: another site with the same key computes the same groups
    expected = hmac.new(b"site-A-0123456789abcdef", b"patient 00012", hashlib.sha256).hexdigest()[:16]
    assert first == expected
    assert hash_id("patient 00013") != first
    monkeypatch.setenv("RESNET_APPS_HASH_KEY", "site-B-0123456789abcdef")
    assert hash_id("patient 00012") != first


def test_the_old_salt_variable_still_keys_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_APPS_HASH_KEY")
    monkeypatch.setenv("RESNET_APPS_HASH_SALT", "legacy-site-salt-value")
    expected = hmac.new(b"legacy-site-salt-value", b"x", hashlib.sha256).hexdigest()[:16]
    assert keyed_hash("x") == expected


def test_dicom_and_csv_groups_share_one_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    # a patient ID hashed from a DICOM header equals the same ID hashed as an index CSV group value
    assert hash_identifier("  PAT-42 ") == hash_id("PAT-42") and hash_identifier("") is None


def test_public_salt_is_gone_a_dictionary_no_longer_reverses_groups(no_env_key: Path) -> None:
    # the probe's attack: hash every candidate record number with the old public salt and look it up
    old = {hashlib.sha256(f"resnet_apps/group/v1:{n}".encode()).hexdigest()[:16]: n for n in range(1000)}
    assert all(hash_id(str(n)) not in old for n in (7, 123, 999))


def test_key_file_made_once_mode_0600(no_env_key: Path) -> None:
    old_umask = os.umask(0o000)  # even a permissive umask must not make the key readable by others
    try:
        first = hash_id("a")
    finally:
        os.umask(old_umask)
    assert key_file() == no_env_key and no_env_key.is_file()
    assert stat.S_IMODE(no_env_key.stat().st_mode) == 0o600
    key = no_env_key.read_text().strip()
    assert len(key) == 64 and int(key, 16) >= 0  # 32 random bytes
    assert hash_id("a") == first == hmac.new(key.encode(), b"a", hashlib.sha256).hexdigest()[:16]
    assert [p.name for p in no_env_key.parent.iterdir()] == ["hash.key"]  # no temporary left


def test_an_existing_key_file_is_used_never_replaced(no_env_key: Path) -> None:
    no_env_key.parent.mkdir(parents=True)
    no_env_key.write_text("key-shared-by-the-two-sites-0123\n")
    assert (
        hash_id("p") == hmac.new(b"key-shared-by-the-two-sites-0123", b"p", hashlib.sha256).hexdigest()[:16]
    )
    assert no_env_key.read_text() == "key-shared-by-the-two-sites-0123\n"


def test_a_short_key_file_is_refused(no_env_key: Path) -> None:
    no_env_key.parent.mkdir(parents=True)
    no_env_key.write_text("short\n")
    with pytest.raises(HashKeyError, match="hash.key.*shorter than 16"):
        hash_id("p")


def test_the_key_is_never_printed(no_env_key: Path, tmp_path: Path) -> None:
    # `inspect` of a DICOM prints the patient hash; the key behind it appears in no output
    sys.path.insert(0, str(REPO / "tests"))
    import numpy as np
    from dicom_fixtures import make_dicom  # noqa: PLC0415

    path = make_dicom(tmp_path / "p.dcm", np.arange(16, dtype=np.uint16).reshape(4, 4), patient_id="PID-9")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "inspect", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key = no_env_key.read_text().strip()
    assert hash_identifier("PID-9") in result.stdout  # the hash is shown (same key: the file)
    assert key not in result.stdout + result.stderr and "PID-9" not in result.stdout


def test_processes_starting_together_agree_on_one_key(no_env_key: Path) -> None:
    # DDP ranks and DataLoader workers may all hash on first use: the key file is created once, never replaced
    code = "from resnet_apps.io.identity import keyed_hash; print(keyed_hash('patient-1'))"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outputs) == 1 and len(next(iter(outputs))) == 16
    assert outputs == {hash_id("patient-1")}
    assert sorted(p.name for p in no_env_key.parent.iterdir()) == ["hash.key"]
