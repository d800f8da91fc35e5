"""A throw-away single-node SLURM cluster on localhost for the tests.

munged + slurmctld + slurmd with a generated slurm.conf (own state/spool/log folders, proctrack/linuxproc,
task/none, no accounting DB) and ``gpus`` fake GPUs as generic resources backed by placeholder device files, so jobs
that ask for GPUs go through ``--gpus``/``--gres`` scheduling exactly as on a real cluster. Every daemon is started
by us and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
PARTITION = "debug"


def missing_requirements() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for exe in (*DAEMONS, "/usr/bin/sbatch", "/usr/bin/squeue"):
        if not Path(exe).exists():
            return f"{exe} not installed (apt-get install slurmctld slurmd slurm-client munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root"
    return None


@dataclass
class Cluster:
    root: Path
    gpus: int
    cpus: int
    mem_mb: int
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    munged_pid: int | None = None

    etc: Path = Path("/etc/slurm")
    _backups: dict[Path, Path | None] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        # The default location, as on a real cluster: the SLURM executor plugin strips SLURM_* variables
        # (SLURM_CONF included) inside jobs, so srun in a jobstep only finds the config here.
        return self.etc / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _install(self, path: Path, text: str) -> None:
        """Write a system config file, keeping any existing one to restore on stop()."""
        if path not in self._backups:
            backup = None
            if path.exists():
                backup = path.with_name(path.name + ".loongrl-test-backup")
                path.replace(backup)
            self._backups[path] = backup
        path.write_text(text)

    def _restore(self) -> None:
        for path, backup in self._backups.items():
            path.unlink(missing_ok=True)
            if backup is not None:
                backup.replace(path)
        self._backups.clear()

    def write_conf(self) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool", "log", "dev"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # slurmd wants GPU files to be character devices: harmless ones (mem devices 1:3 null, 1:5 zero, ...)
        # under fresh names stand in for /dev/nvidia*, so Slurm binds them per job and sets CUDA_VISIBLE_DEVICES.
        minors = (3, 5, 7, 8, 9, 11)
        if self.gpus > len(minors):
            raise ValueError(f"at most {len(minors)} fake GPUs")
        devs = []
        for i in range(self.gpus):
            dev = self.root / "dev" / f"fakegpu{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, minors[i]))
            devs.append(str(dev))
        r = self.root
        self._install(
            self.conf,
            f"""ClusterName=loongrltest
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MinJobAge=600
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""",
        )
        self._install(self.etc / "gres.conf", "".join(f"NodeName={self.host} Name=gpu File={d}\n" for d in devs))

    def start_munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
            return  # a munged is already serving this machine; leave it alone
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o600)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.munged_pid = int(Path("/run/munge/munged.pid").read_text().strip())

    def start(self, timeout: float = 60) -> None:
        self.write_conf()
        self.start_munge()
        log = (self.root / "log" / "daemons.out").open("a")
        for name, exe in (("slurmctld", "/usr/sbin/slurmctld"), ("slurmd", "/usr/sbin/slurmd")):
            self.procs[name] = subprocess.Popen(
                [exe, "-D", "-f", str(self.conf)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            time.sleep(1 if name == "slurmctld" else 0)
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            state = res.stdout.strip()
            if state == "idle":
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.root}/log")
            time.sleep(1)
        raise RuntimeError(f"node not idle after {timeout}s (state {state!r}); see {self.root}/log")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, capture_output=True, check=False)
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.munged_pid:
            try:
                os.kill(self.munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(50):
                if not Path(f"/proc/{self.munged_pid}").exists():
                    break
                time.sleep(0.1)
        self._restore()

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (finished jobs stay visible for MinJobAge)."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id], env=self.env, capture_output=True, text=True, check=True
        ).stdout
        fields = {}
        for tok in out.split():
            k, _, v = tok.partition("=")
            fields[k] = v
        return fields
