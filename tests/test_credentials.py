"""Secrets never land (docs/how-to/clusters-and-team-server.md): a password planted in an override or in the tracking
URI stops the run before anything is saved, and appears nowhere: not in the store, the sweep directory, the cache or
the output, which names the key and where credentials go instead."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import ROOT, run_entry

from benchmark.credentials import credential_problems, uri_problems

SECRET = "hunter2-planted-7f3a"


def test_keys_and_urls_that_carry_credentials_are_named_without_their_value():
    flagged = ["+tracking.password=s3cr1t-a", "tracking.api_key=s3cr1t-b", "+hydra.launcher.secret=s3cr1t-c",
               "+tracking.token=s3cr1t-d", "tracking.uri=https://ana:s3cr1t-e@mlflow.example:5000",
               "+aws_access_key=s3cr1t-f", "+x.apiKey=s3cr1t-g", "+x.accessToken=s3cr1t-h", "+x.api-key=s3cr1t-i",
               "+x={user: ana, password: s3cr1t-j}"]  # fmt: skip
    flagged = {o: "s3cr1t-" + o.split("s3cr1t-")[1][0] for o in flagged}  # each case's own planted value
    for override, secret in flagged.items():
        (problem,) = credential_problems([override])
        assert secret not in problem and "MLFLOW_TRACKING" in problem, problem
    clean = ["tracking.uri=http://127.0.0.1:5000", "budget.max_tokens=3", "strategy=finetune", "target.root=/a:b@c",
             "tracking.uri=https://mlflow.example:5000/path@x"]  # fmt: skip
    assert credential_problems(clean) == []
    assert uri_problems("http://127.0.0.1:5000") == [] and uri_problems("http://u:p@h:1")


@pytest.mark.parametrize(
    "planted",
    [[f"+tracking.password={SECRET}"], [f"tracking.uri=http://ana:{SECRET}@127.0.0.1:5999"]],
    ids=["override", "uri"],
)
@pytest.mark.parametrize("multirun", [True, False], ids=["sweep", "single"])
def test_a_planted_password_stops_the_run_and_lands_nowhere(planted, multirun, tmp_path, store):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = [] if planted[0].startswith("tracking.uri") else [f"tracking.uri={store}"]
    cmd = [sys.executable, "-m", "benchmark.run", *(["-m"] if multirun else []), *planted, *uri,
           f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           f"hydra.run.dir={tmp_path / 'run'}", "tracking.experiment=secrets"]  # fmt: skip
    done = run_entry(cmd, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "a credential in the config; nothing was run" in done.stderr and "MLFLOW_TRACKING_PASSWORD" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_the_check_reads_a_uri_it_cannot_resolve_yet_without_failing():
    """A tracking URI that interpolates ``${hydra:...}`` (resolved only once Hydra's config is set) passes the early
    check instead of raising, which Hydra would turn into a warning that skips the check altogether."""
    from omegaconf import OmegaConf

    from benchmark.hydra_callback import refuse_credentials

    config = OmegaConf.create({"hydra": {"overrides": {"task": ["strategy=finetune"], "hydra": []}},
                               "tracking": {"uri": "sqlite:///${hydra:runtime.cwd}/x.db"}})  # fmt: skip
    refuse_credentials(config)  # no exception, nothing refused
    config.hydra.overrides.task.append("+tracking.password=s3cr1t-k")
    with pytest.raises(SystemExit):
        refuse_credentials(config)
