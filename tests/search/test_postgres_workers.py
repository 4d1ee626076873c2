"""Several workers on one study in a REAL PostgreSQL server: exactly N trials, unique
numbers, none lost. CI installs Debian's postgresql 15 (.ci/run); without it this
test fails with the install command rather than skipping."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
N_TRIALS = 9
WORKERS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and pg_ctl refuse to run as root: use the unprivileged `postgres` user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def test_three_workers_share_one_postgres_study() -> None:
    if not (PG_BIN / "initdb").is_file():
        pytest.fail("PostgreSQL 15 binaries are missing at /usr/lib/postgresql/15/bin; "
                    "install them with: apt-get update && apt-get install -y postgresql")
    optuna = pytest.importorskip("optuna")
    tmp = Path(tempfile.mkdtemp(prefix="lossdoctor-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    started = False
    workers: list[subprocess.Popen[str]] = []
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                                     "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True, text=True)
        subprocess.run(_as_postgres([
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-t", "60",
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off",
            "start"]), check=True, capture_output=True, text=True)
        started = True
        subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p",
                                     str(port), "-U", "postgres", "lossdoctor"]),
                       check=True, capture_output=True, text=True)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/lossdoctor"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for w in range(WORKERS):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "lossdoctor", "search",
                 str(ROOT / "examples" / "search_digits.py") + ":train",
                 "--trials", str(N_TRIALS), "--storage", url, "--study", "shared",
                 "--run-root", str(tmp / f"worker-{w}"), "--format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp))
        outputs = [p.communicate(timeout=240) for p in workers]
        for p, (out, err) in zip(workers, outputs, strict=True):
            assert p.returncode in (0, 1), err
            assert json.loads(out)["study"] == "shared"
        study = optuna.load_study(study_name="shared", storage=url)
        trials = study.get_trials(deepcopy=False)
        real = [t for t in trials if not t.user_attrs.get("lossdoctor_surplus")]
        states = optuna.trial.TrialState
        numbers = sorted(t.number for t in real)
        assert numbers == list(range(N_TRIALS)), numbers  # unique, none lost, N in all
        assert all(t.state in (states.COMPLETE, states.PRUNED) for t in real), \
            [t.state for t in real]
        # Each trial ran in exactly one worker, and every worker did some of the work.
        dirs = sorted(p.name for p in tmp.glob("worker-*/shared/trial-*"))
        assert dirs == [f"trial-{n:04d}" for n in range(N_TRIALS)]
        assert sum(1 for w in range(WORKERS) if any((tmp / f"worker-{w}").glob(
            "shared/trial-*"))) >= 2
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
        if started:
            subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m",
                                         "immediate", "-w", "stop"]), capture_output=True)
        for _ in range(3):  # the server may take a moment to let go of its files
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                break
            time.sleep(0.5)
