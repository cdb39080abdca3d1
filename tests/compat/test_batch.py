"""ipcluster with batch launchers against real batch systems started by the test on localhost."""
import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "batch"))
import sge_cluster  # noqa: E402
import slurm_cluster  # noqa: E402

from conftest import BIN_DIR, wait_for  # noqa: E402

IPCLUSTER = os.path.join(BIN_DIR, "ipcluster")
IPP = os.path.join(BIN_DIR, "ipp")


def batch_system(name, module, cluster_class, packages=""):
    """A module-scoped fixture: the batch system of `module` running in a fresh directory, or a
    skip naming what is missing."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        missing = module.missing()
        if missing:
            pytest.skip(f"{name} not installed here: {', '.join(missing)} missing{packages}")
        with cluster_class(str(tmp_path_factory.mktemp(module.__name__))) as s:
            yield s
    return fixture


slurm = batch_system("Slurm", slurm_cluster, slurm_cluster.SlurmCluster, " (slurmctld slurmd slurm-client munge)")
sge = batch_system("Grid Engine", sge_cluster, sge_cluster.SgeCluster)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_slurm_engines(slurm, tmp_path):
    env = dict(slurm.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipcluster_config.json").write_text(json.dumps({"slurm": {"queue": "debug", "walltime": "00:10:00"}}))
    r = subprocess.run([IPCLUSTER, "start", "-n", "3", "--engines", "slurm", "--daemonize", "--timeout=90"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    cluster = json.load(open(profile / "security" / "cluster-.json"))
    job = cluster["engines"]["sets"][0]["state"]["job_id"]
    assert job.isdigit()
    script = open(cluster["engines"]["sets"][0]["state"]["script"]).read()
    assert "#SBATCH --ntasks=3" in script and "#SBATCH --partition=debug" in script and "--time=00:10:00" in script
    queue = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True).stdout
    assert "RUNNING" in queue
    engines = json.loads(subprocess.run([IPP, "engines", "--json"], env=env, capture_output=True, text=True,
                                        timeout=30, check=True).stdout)
    assert len(engines) == 3
    pids = [e["pid"] for e in engines]
    r = subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip() == "",
             timeout=30, what="the Slurm job to end")
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="the engines to stop")


def test_slurm_environment_and_job_output_file(slurm, tmp_path):
    env = dict(slurm.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipcluster_config.json").write_text(json.dumps(
        {"environment": {"IPP_ENV_G": "global"}, "slurm": {"queue": "debug", "environment": {"IPP_ENV_S": "it's slurm"}}}))
    r = subprocess.run([IPCLUSTER, "start", "-n", "1", "--engines", "slurm", "--daemonize", "--timeout=90",
                        "--env", "IPP_ENV_F=flag"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        job = json.load(open(profile / "security" / "cluster-.json"))["engines"]["sets"][0]["state"]["job_id"]
        out = subprocess.run([IPP, "px", "--", 'echo "$IPP_ENV_G|$IPP_ENV_S|$IPP_ENV_F"'], env=env, capture_output=True,
                             text=True, timeout=60).stdout
        assert "global|it's slurm|flag" in out, out
        output = str(profile / "log" / f"slurm-engine-{job}.log")
        listed = subprocess.run([IPCLUSTER, "list"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert output in listed, listed
        wait_for(lambda: os.path.exists(output), timeout=30, what="the job's output file")
    finally:
        subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60)


def test_slurm_controller_and_engines(slurm, tmp_path):
    # The controller as a job too; engines find its connection file in the shared profile dir.
    env = dict(slurm.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    r = subprocess.run([IPCLUSTER, "start", "-n", "2", "--engines", "Slurm", "--controller", "SlurmControllerLauncher",
                        "--daemonize", "--timeout=90"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads(subprocess.run([IPP, "engines", "--json"], env=env, capture_output=True, text=True,
                                         timeout=30, check=True).stdout)) == 2
    subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60, check=True)
    wait_for(lambda: subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip() == "",
             timeout=30, what="all Slurm jobs to end")


def test_sge_engines(sge, tmp_path):
    env = dict(sge.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    r = subprocess.run([IPCLUSTER, "start", "-n", "2", "--engines", "SGE", "--daemonize", "--timeout=90"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    profile = tmp_path / "ipython" / "profile_default"
    cluster = json.load(open(profile / "security" / "cluster-.json"))
    job = cluster["engines"]["sets"][0]["state"]["job_id"]
    assert job.isdigit()
    engines = json.loads(subprocess.run([IPP, "engines", "--json"], env=env, capture_output=True, text=True,
                                        timeout=30, check=True).stdout)
    assert len(engines) == 2
    pids = [e["pid"] for e in engines]
    subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60, check=True)
    wait_for(lambda: job not in subprocess.run(["qstat"], env=env, capture_output=True, text=True).stdout,
             timeout=30, what="the SGE job to end")
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="the engines to stop")
