"""The one keyed hash for identifiers that must never travel raw (patients, groups, file ids; no torch).

``keyed_hash(value)`` is HMAC-SHA256 under a secret key, 16 hex characters. A fixed public salt would not
do: anyone holding a list of plausible identifiers (record numbers, patient IDs) could hash them all and
read the groups back from ``split.json``. The key comes from, in order:

1. ``$RESNET_APPS_HASH_KEY`` (``$RESNET_APPS_HASH_SALT``, the older name, is honoured too);
2. the key file ``$XDG_CONFIG_HOME/resnet_apps/hash.key`` (``~/.config/...``), created on first use with
   32 random bytes, mode 0600, atomically (two processes starting together agree on one key).

The key is never printed or written anywhere else. Hashes are stable on one machine (so a resumed run
or a second evaluation rebuilds the same groups and split) and differ between machines unless the key
is shared: two sites that must agree on groups copy the key file, or set the same
``RESNET_APPS_HASH_KEY``, through a channel they trust.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from resnet_apps.errors import HashKeyError

KEY_ENV = "RESNET_APPS_HASH_KEY"
LEGACY_KEY_ENV = "RESNET_APPS_HASH_SALT"
KEY_FILE_NAME = "hash.key"
HASH_CHARS = 16

_cache: dict[Path, bytes] = {}


def key_file() -> Path:
    """Where the machine's key lives: ``$XDG_CONFIG_HOME/resnet_apps/hash.key`` (``~/.config`` default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "resnet_apps" / KEY_FILE_NAME


def _create_key_file(path: Path) -> None:
    """Write a fresh random key to ``path`` unless one exists; never replaces an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask
        try:
            os.link(tmp, path)  # fails if another process created the key first: theirs wins
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def hash_key() -> bytes:
    """The secret key (from the environment, else the key file, created on first use)."""
    for name in (KEY_ENV, LEGACY_KEY_ENV):
        value = os.environ.get(name)
        if value:
            return value.encode("utf-8")
    path = key_file()
    if path in _cache:
        return _cache[path]
    try:
        if not path.is_file():
            _create_key_file(path)
        key = path.read_text(encoding="ascii").strip().encode("ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise HashKeyError(
            f"{path}: cannot read or create the identifier hash key ({type(error).__name__}); fix: make "
            f"the folder writable, or set {KEY_ENV} to a long random secret"
        ) from error
    if len(key) < 16:
        raise HashKeyError(
            f"{path}: the identifier hash key is shorter than 16 characters; fix: delete the file (a new "
            f"random key is made) or put the key shared with the other site in it"
        )
    _cache[path] = key
    return key


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 of ``value`` under :func:`hash_key`, the first 16 hex characters."""
    digest = hmac.new(hash_key(), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_CHARS]
