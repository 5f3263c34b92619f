"""`clutune ui` serves MLflow on loopback; every model name builds and runs on its input shape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from clutune.errors import UserError
from clutune.models import build_model


@pytest.mark.slow  # an MLflow server start: `make test` runs it (docs/testing.md)
def test_ui_serves_mlflow_on_loopback(tmp_path, free_port):
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "clutune"), "ui", "--tracking-uri", uri, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        body = None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
                ) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert body is not None, "MLflow UI did not answer within 90 s"
        assert "experiments" in body
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        lines = [line for line in listening.splitlines() if f":{port} " in line]
        assert lines and all("127.0.0.1:" in line for line in lines), lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ({"name": "mlp", "hidden": [16, 8]}, (64,)),
        ({"name": "mlp"}, (40,)),
        ({"name": "cnn", "width": 8}, (3, 32, 32)),
        ({"name": "resnet18_cifar"}, (3, 32, 32)),
        ({"name": "torchvision", "options": {"arch": "mobilenet_v3_small"}}, (3, 64, 64)),
    ],
)
def test_models_build_for_their_inputs(spec, shape):
    model = build_model(spec, shape, 7).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *shape))
    assert out.shape == (2, 7)


def test_resnet18_cifar_has_the_cifar_stem():
    model = build_model({"name": "resnet18_cifar"}, (3, 32, 32), 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)


def test_unknown_model_name_is_a_user_error():
    """No silent torchvision fallback: a torchvision classifier is named explicitly, and a bad one is refused."""
    with pytest.raises(UserError, match="unknown model 'resnet999'"):
        build_model({"name": "resnet999"}, (3, 32, 32), 10)
    with pytest.raises(UserError, match="model.options.arch': 'resnet999'"):
        build_model({"name": "torchvision", "options": {"arch": "resnet999"}}, (3, 32, 32), 10)
