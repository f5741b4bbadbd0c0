"""The helper scripts, run for real: ``scripts/mlflow_server.sh`` listens on loopback unless ``HOST`` says otherwise
(docs/how-to/clusters-and-team-server.md ("Security"): nothing listens beyond 127.0.0.1 unless you set ``HOST``)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
from conftest import env_sh_project, free_port, stop, wait_healthy


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state on ``port``, read from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: TCP_LISTEN
                continue
            # the kernel prints each 32-bit word of the address in host (little-endian) byte order
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            found.add(str(ipaddress.ip_address(raw)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("host", [None, "127.0.0.2"])
def test_mlflow_server_binds_to_loopback_unless_host_is_set(tmp_path, host):
    """The script started as a user would, from a copy of the project in a temp dir (its default SQLite store and
    artifacts go under ``<project>/server/``), on a free port; what it listens on is read from /proc/net/tcp.
    ``HOST=127.0.0.2`` shows that the variable is honoured without exposing anything beyond this machine."""
    project = tmp_path / "project"
    venv = env_sh_project(project)
    port = free_port()
    env = {**os.environ, "VENV": str(venv), "PORT": str(port), "WORKERS": "1"}
    for name in ("HOST", "BACKEND", "ARTIFACTS"):
        env.pop(name, None)
    if host:
        env["HOST"] = host
    proc = subprocess.Popen(["bash", str(project / "scripts" / "mlflow_server.sh")], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        wait_healthy(proc, f"http://{host or '127.0.0.1'}:{port}", timeout_s=180)
        addresses = listening_addresses(port)
    finally:
        stop(proc)
    assert addresses == {host or "127.0.0.1"}
    assert (project / "server" / "mlflow.db").is_file()
    assert proc.returncode is not None


@pytest.mark.parametrize(
    ("env", "said"),
    [({"AUTH_CONFIG": "auth.ini"}, "holds the admin's password and is readable by others (mode 644): chmod 600 it"),
     ({"HOST": "0.0.0.0"}, "HOST=0.0.0.0 exposes the server beyond this machine: name the host names its clients use")],
    ids=["auth_config_readable_by_others", "exposed_without_allowed_hosts"],
)  # fmt: skip
def test_mlflow_server_refuses_an_unsafe_start(tmp_path, env, said):
    """The server script stops before starting MLflow when the authentication file (the admin's password) is readable
    by others, or when it would listen beyond loopback without naming the hosts its clients use."""
    project = tmp_path / "project"
    venv = env_sh_project(project)
    (tmp_path / "auth.ini").write_text("[mlflow]\nadmin_username = admin\nadmin_password = x\n")
    (tmp_path / "auth.ini").chmod(0o644)
    full = {**os.environ, "VENV": str(venv), "PORT": str(free_port()), **env}
    for name in {"HOST", "ALLOWED_HOSTS", "AUTH_CONFIG"} - set(env):
        full.pop(name, None)
    done = subprocess.run(["bash", str(project / "scripts" / "mlflow_server.sh")], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and said in done.stderr, done.stderr[-2000:]
