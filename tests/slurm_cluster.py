"""A throw-away single-node Slurm cluster for tests: install, start, wait until idle, stop.

Why a real Slurm and not a fake `sbatch`: the executor plugin's behaviour that matters (the sbatch
call it builds from rule resources, the job step that runs inside the allocation, status polling)
only shows against the real daemons. Everything lives in a temporary directory (config, state,
spool, logs) and the daemons run in the foreground as children of the test, so they can be stopped
by their own process ids and leave nothing behind.

Slurm's clients find the config through `SLURM_CONF`, but the executor's job step strips every
`SLURM_*` variable before its inner `srun`, which then only looks at the default path. So the
cluster also links /etc/slurm/slurm.conf to its config while it runs (refusing to replace a real
one) and removes the link when it stops.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged", "sinfo", "sbatch", "squeue")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
MEMORY_MARGIN_MB = 1024  # left to the OS so that Slurm never promises memory the node lacks


class SlurmSetupError(RuntimeError):
    """Slurm could not be installed or started; the message says which step and why."""


def _run(command: list[str], step: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise SlurmSetupError(f"{step} failed ({' '.join(command)}): {output}")
    return result.stdout


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get when their programs are missing (needs root)."""
    if all(shutil.which(program) for program in DAEMONS):
        return
    if os.geteuid() != 0:
        raise SlurmSetupError("installing slurm-wlm and munge needs root (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update"], "apt-get update", env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], "apt-get install", env)
    missing = [program for program in DAEMONS if not shutil.which(program)]
    if missing:
        raise SlurmSetupError(f"after apt-get install, still missing: {', '.join(missing)}")


def _munge_works() -> bool:
    credential = subprocess.run(["munge", "-n"], capture_output=True)
    if credential.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=credential.stdout, capture_output=True).returncode == 0


def _start_munged() -> int | None:
    """Start munged as the munge user unless one already answers; its pid if we started it."""
    if _munge_works():
        return None
    if not MUNGE_KEY.exists():
        _run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], "creating the munge key")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    MUNGE_PID.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_PID.parent, "munge", "munge")
    MUNGE_PID.parent.chmod(0o755)
    _run(["runuser", "-u", "munge", "--", "munged", "--force"], "starting munged")
    for _ in range(50):
        if _munge_works():
            return int(MUNGE_PID.read_text().strip())
        time.sleep(0.1)
    raise SlurmSetupError("munged started but `munge -n | unmunge` still fails")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - MEMORY_MARGIN_MB
    raise SlurmSetupError("no MemTotal in /proc/meminfo")


def write_slurm_conf(root: Path, node: str, partition: str) -> Path:
    """slurm.conf for one node at 127.0.0.1 with 2 CPUs and no cgroups or accounting database.

    MinJobAge keeps finished jobs in the controller for 10 minutes, so `squeue` can report their
    final state (without slurmdbd, `sacct` has nothing to say).
    """
    for name in ("state", "spool", "log"):
        (root / name).mkdir(parents=True, exist_ok=True)
    settings = {
        "ClusterName": "test",
        "SlurmctldHost": f"{node}(127.0.0.1)",
        "SlurmctldPort": _free_port(),
        "SlurmdPort": _free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log/slurmctld.log",
        "SlurmdLogFile": root / "log/slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "MpiDefault": "none",
        "ReturnToService": 2,
        "MinJobAge": 600,
        "SchedulerType": "sched/builtin",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs=2 RealMemory={_real_memory_mb()} State=UNKNOWN"
    )
    lines.append(f"PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP")
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


@dataclass
class SlurmCluster:
    """A running single-node cluster; `env` is the environment that talks to it."""

    root: Path
    partition: str = "test"
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    conf: Path | None = None
    _daemons: list[subprocess.Popen] = field(default_factory=list)
    _munged_pid: int | None = None
    _linked: bool = False

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self, timeout: float = 60.0) -> None:
        """Start munged (if none runs), slurmctld and slurmd; return once the node is idle."""
        ensure_installed()
        self._munged_pid = _start_munged()
        self.conf = write_slurm_conf(self.root, self.node, self.partition)
        self._link_default_conf()
        for command in (
            ["slurmctld", "-D", "-f", str(self.conf)],
            ["slurmd", "-D", "-f", str(self.conf), "-N", self.node],
        ):
            # stdout too: errors before a daemon opens its log file (a bad config) show only there
            with (self.root / "log" / f"{command[0]}.stdout").open("w") as log:
                self._daemons.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
                )
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for daemon in self._daemons:
                if daemon.poll() is not None:
                    raise SlurmSetupError(
                        f"{daemon.args[0]} exited with {daemon.returncode}: {self.log_tail()}"
                    )
            query = subprocess.run(
                ["sinfo", "-h", "-n", self.node, "-o", "%t"],
                capture_output=True,
                text=True,
                env=self.env,
            )
            state = query.stdout.strip() or query.stderr.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise SlurmSetupError(
            f"node {self.node} not idle after {timeout} s ({state}): {self.log_tail()}"
        )

    def _link_default_conf(self) -> None:
        if DEFAULT_CONF.is_symlink() and not DEFAULT_CONF.exists():
            DEFAULT_CONF.unlink()  # left by an earlier test run that was killed
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise SlurmSetupError(
                f"{DEFAULT_CONF} exists: this machine has its own Slurm config, which the test "
                "cluster would replace; run the test on a machine without one"
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self.conf)
        self._linked = True

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the daemons' logs, for error messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            parts.append(f"[{log.name}] {log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel leftover jobs, then stop the daemons this object started (by pid)."""
        if self._daemons:
            subprocess.run(
                ["scancel", "--full", "--user", "root"], env=self.env, capture_output=True
            )
        for daemon in self._daemons:
            daemon.terminate()
        for daemon in self._daemons:
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        self._daemons.clear()
        if self._linked:
            DEFAULT_CONF.unlink()
            self._linked = False
        if self._munged_pid is not None:
            os.kill(self._munged_pid, 15)
            self._munged_pid = None
