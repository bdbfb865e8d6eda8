"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on loopback for the PACS tests.

The ``orthanc`` fixture starts it as a subprocess with a generated configuration: loopback only, a free
port, authentication on, DICOMweb on, storage in the test's tmp folder. It is killed and its folder
removed in the fixture's teardown, also when the test fails; it skips only where Orthanc is not installed.
Import it into a test module with ``from orthanc_server import Server, orthanc``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import torch
import yaml
from dicomweb_client.api import DICOMwebClient

from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.heads import build_model

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radiology", "not-a-real-secret"
STARTUP_S = 60  # bounded wait for the server
LIFETIME_S = 600  # the server never outlives this, even if teardown were skipped


@dataclass(frozen=True)
class Server:
    http: str  # http://127.0.0.1:PORT
    source: str  # the CLI's INPUT: dicomweb+http://127.0.0.1:PORT/dicom-web

    def client(self) -> DICOMwebClient:
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        return DICOMwebClient(self.source.removeprefix("dicomweb+"), session=session)

    def upload(self, path: Path) -> None:
        reply = requests.post(
            f"{self.http}/instances", data=path.read_bytes(), auth=(USER, PASSWORD), timeout=30
        )
        reply.raise_for_status()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Server]:
    """A running Orthanc with DICOMweb and authentication on; stopped and removed at teardown."""
    if not ORTHANC.is_file() or not PLUGIN.is_file():
        pytest.skip(f"Orthanc not installed ({ORTHANC}, {PLUGIN}): apt-get install orthanc orthanc-dicomweb")
    folder = tmp_path / "orthanc"
    (folder / "db").mkdir(parents=True)
    port = _free_port()
    config = {
        "Name": "resnet_apps-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "RemoteAccessAllowed": False,
        "HttpPort": port,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen(
        ["timeout", "-s", "KILL", str(LIFETIME_S), str(ORTHANC), str(folder / "orthanc.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    http = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"Orthanc exited ({process.returncode}): {(folder / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(f"{http}/system", auth=(USER, PASSWORD), timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not answer within {STARTUP_S} s")
            time.sleep(0.2)
        yield Server(http, f"dicomweb+{http}/dicom-web")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def grey_run(tmp_path: Path) -> Path:
    """A tiny random 1-band classifier run (resnet18 at 32 px): enough for the protocol, not for accuracy.

    Its recipe.yaml states the checkpoint's preprocessing, so ``evaluate`` reads images as ``predict`` does.
    """
    torch.manual_seed(0)
    model = build_model("classification", "resnet18", in_chans=1, num_classes=2)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "best",
        model,
        {
            "classes": ["NORMAL", "PNEUMONIA"],
            "positive_class": "PNEUMONIA",
            "operating_threshold": 0.5,
            "preprocessing": {
                "bands": None,
                "scale": 1 / 255,
                "mean": [0.5],
                "std": [0.25],
                "image_size": 32,
                "dicom_window": None,
                "grayscale": True,
            },
        },
    )
    recipe = {
        "name": "grey",
        "task": "classification",
        "data": {
            "root": str(tmp_path / "no-data"),
            "source": "folder",
            "classes": ["NORMAL", "PNEUMONIA"],
            "bands": None,
            "grayscale": True,
            "scale": 1 / 255,
            "normalize": "none",
            "image_size": 32,
            "augment": "none",
            "cache": True,  # evaluate from DICOMweb must not cache the retrieved images anyway
        },
        "model": {"backbone": "resnet18", "weights": "none"},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "seed": 0},
        "eval": {"metric": "auroc", "bootstrap": 50, "gradcam": 0},
    }
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return run
