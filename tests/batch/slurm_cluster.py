"""A single-node Slurm (munge + slurmctld + slurmd) on 127.0.0.1 in a private directory, for tests.

    with SlurmCluster(tmpdir) as slurm:
        env = slurm.env()          # SLURM_CONF etc. for sbatch/squeue/scancel and ipcluster
"""
import os
import shutil
import socket
import subprocess

from daemons import stop_all, wait_until

BINARIES = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo"]


def missing():
    return [b for b in BINARIES if not shutil.which(b) and not os.path.exists(f"/usr/sbin/{b}")]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SlurmCluster:
    def __init__(self, workdir):
        self.dir = os.path.abspath(workdir)
        self.procs = []

    def env(self):
        return dict(os.environ, SLURM_CONF=self.conf)

    def __enter__(self):
        d = self.dir
        for sub in ("munge", "state", "spool", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "munge"), 0o755)
        key = os.path.join(d, "munge.key")
        subprocess.run(["mungekey", "-c", "-f", "-k", key], check=True, capture_output=True)
        self.socket = os.path.join(d, "munge", "munge.socket")
        self._start(["munged", "-F", "--force", f"--socket={self.socket}", f"--key-file={key}",
                     f"--pid-file={d}/munge/munged.pid", f"--log-file={d}/log/munged.log",
                     f"--seed-file={d}/munge/seed"], "munged")
        self._wait(lambda: os.path.exists(self.socket), "munged")
        self.conf = os.path.join(d, "slurm.conf")
        ctld, slurmd_port = free_port(), free_port()
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=ipptest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        env = self.env()
        self._start(["slurmctld", "-D", "-i", "-f", self.conf], "slurmctld", env)
        self._start(["slurmd", "-D", "-N", "localhost", "-f", self.conf], "slurmd", env)

        def idle():
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc")
        self._wait(idle, "the Slurm node to be idle", 60)
        return self

    def _start(self, argv, name, env=None):
        log = open(os.path.join(self.dir, "log", name + ".out"), "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env or os.environ,
                                           start_new_session=True))

    def _wait(self, condition, what, timeout=30):
        wait_until(condition, what, timeout, self.procs,
                   lambda p: os.path.join(self.dir, "log", os.path.basename(p.args[0]) + ".out"))

    def __exit__(self, *exc):
        stop_all(self.procs)
