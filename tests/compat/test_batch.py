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


def adapt_cluster(system, kind, tmp_path, extra=()):
    """An --adapt cluster of `kind` jobs of 2 engines, at most 4 engines, idle timeout 2 s; its env."""
    env = dict(system.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    r = subprocess.run([IPCLUSTER, "start", "--adapt", "--engines", kind, "--max-engines", "4", "--engines-per-job", "2",
                        "--idle-timeout", "2", "--daemonize", "--timeout=60", *extra],
                       env=env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    return env


def adapt_jobs(env):
    """Our live jobs as the cluster file names them."""
    path = os.path.join(env["IPYTHONDIR"], "profile_default", "security", "cluster-.json")
    return [j["id"] for j in json.load(open(path)).get("adapt", {}).get("jobs", [])]


def adapt_client(env):
    import ipyparallel
    return ipyparallel.Client(profile_dir=os.path.join(env["IPYTHONDIR"], "profile_default"), timeout=20)


def test_slurm_adapt_submits_for_waiting_tasks_replaces_a_cancelled_job_and_cancels_idle_ones(slurm, tmp_path):
    from ipp_native import NativeView
    env = adapt_cluster(slurm, "Slurm", tmp_path)
    squeue = lambda: subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True).stdout
    try:
        rc = adapt_client(env)
        assert rc.ids == [] and squeue().strip() == ""  # min 0: no job before work came
        # 200 short tasks: jobs of 2 engines appear in squeue, at most 2 waiting at once.
        ar = NativeView(rc, retries=3).map("ipp.sleep", [0.1] * 200)
        seen = set()

        def running_engines():
            for line in squeue().splitlines():
                seen.add(line.split()[0])
            return len(rc.ids) >= 2 and not ar.ready()

        wait_for(running_engines, timeout=60, what="engines of a Slurm job to register")
        status = rc.queue_status()
        victim = status[rc.ids[0]]["job"]
        assert victim in seen, (victim, seen)
        before = set(adapt_jobs(env))
        subprocess.run(["scancel", victim], env=env, check=True)

        def replaced():
            for line in squeue().splitlines():
                seen.add(line.split()[0])
            return set(adapt_jobs(env)) - before - {victim}

        # Work remains: a job is submitted beyond those that were there.
        wait_for(replaced, timeout=60, what="a job to replace the cancelled one")
        assert len(ar.get(120)) == 200
        assert len(seen) >= 2
        # Idle past 2 s: every job is cancelled, squeue is empty again.
        wait_for(lambda: squeue().strip() == "" and adapt_jobs(env) == [] and rc.ids == [], timeout=60,
                 what="the idle jobs to be cancelled")
        log = open(json.load(open(os.path.join(env["IPYTHONDIR"], "profile_default", "security", "cluster-.json")))
                   ["ipcluster_log"]).read()
        assert f"adapt: job {victim} ended" in log and "adapt: cancelling job" in log, log
        rc.close()
    finally:
        subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60)
    wait_for(lambda: squeue().strip() == "", timeout=30, what="all Slurm jobs to end")


def test_sge_adapt_submits_for_waiting_tasks_and_cancels_idle_jobs(sge, tmp_path):
    from ipp_native import NativeView
    env = adapt_cluster(sge, "SGE", tmp_path)
    qstat = lambda: subprocess.run(["qstat"], env=env, capture_output=True, text=True).stdout
    try:
        rc = adapt_client(env)
        assert rc.ids == [] and qstat().strip() == ""
        ar = NativeView(rc, retries=3).map("ipp.sleep", [0.05] * 200)
        listed = []
        while not ar.ready():
            listed.append(qstat())
            ar.wait(0.2)
        assert len(ar.get(1)) == 200
        jobs = {line.split()[0] for out in listed for line in out.splitlines()[2:] if line.strip()}
        assert jobs, listed
        wait_for(lambda: qstat().strip() == "" and adapt_jobs(env) == [] and rc.ids == [], timeout=60,
                 what="the idle jobs to be cancelled")
        rc.close()
    finally:
        subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60)


def test_slurm_job_that_ends_is_replaced_without_adapt(slurm, tmp_path):
    env = dict(slurm.env(), IPYTHONDIR=str(tmp_path / "ipython"))
    r = subprocess.run([IPCLUSTER, "start", "-n", "2", "--engines", "Slurm", "--daemonize", "--timeout=90"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    path = tmp_path / "ipython" / "profile_default" / "security" / "cluster-.json"
    squeue = lambda: subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
    try:
        first = json.load(open(path))["engines"]["sets"][0]["state"]["jobs"]
        assert len(first) == 1
        subprocess.run(["scancel", first[0]], env=env, check=True)

        def replacement():
            jobs = json.load(open(path))["engines"]["sets"][0]["state"]["jobs"]
            return jobs if jobs and jobs != first and jobs[0] in squeue() else None

        again = wait_for(replacement, timeout=60, what="a job to replace the cancelled one")
        rc = adapt_client(env)
        wait_for(lambda: len([e for e in rc.queue_status().values() if isinstance(e, dict) and e.get("job") == again[0]]) == 2,
                 timeout=60, what="the replacement's 2 engines to register")
        rc.close()
        log = open(json.load(open(path))["ipcluster_log"]).read()
        assert f"Slurm job {first[0]} ended" in log and f"Slurm job {again[0]} of 2 engine(s) submitted to replace" in log, log
    finally:
        subprocess.run([IPCLUSTER, "stop"], env=env, capture_output=True, text=True, timeout=60)
    wait_for(lambda: squeue() == [], timeout=30, what="all Slurm jobs to end")
