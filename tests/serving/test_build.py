"""``bentoml build`` of both services into a temporary BentoML home (slow: ~30 s each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("service", ["recommender", "support"])
def test_bentoml_build(service, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "HF_HUB_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", f"serving/{service}/bentofile.yaml", "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (bento,) = [p for p in (tmp_path / "bentoml" / "bentos" / service).iterdir() if p.name != "latest"]
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    routes = {route["route"] for route in info["schema"]["routes"]}
    expected = {
        "recommender": {"/recommend", "/events", "/similar", "/search"},
        "support": {"/chat", "/feedback"},
    }[service]
    assert routes == expected
    src = bento / "src"
    assert (src / "serving" / service / "service.py").exists()
    runtime = {"recommender": "promotion.py", "support": "runtime.py"}[service]
    assert (src / "training" / service / runtime).exists()
    if service == "recommender":
        assert (src / "search" / "engine.py").exists()
    assert (src / "features" / "environments" / "local" / "feature_store.yaml").exists()
    assert not (src / "data").exists() and not (src / "tests").exists()
