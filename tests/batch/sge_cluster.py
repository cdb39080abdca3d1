"""Son of Grid Engine (Debian's gridengine packages) on localhost for tests: the packaged cell
(SGE_ROOT=/var/lib/gridengine, SGE_CELL=default) configured non-interactively, with sge_qmaster
and sge_execd run in the foreground (SGE_ND=1) and stopped by PID afterwards."""
import os
import shutil
import socket
import subprocess
import tempfile

from daemons import stop_all, wait_until

SGE_ROOT = "/var/lib/gridengine"
EDITOR = """#!/bin/sh
# qconf's -mconf/-aq only take an editor: apply $SGE_EDIT_SED to the file it opens.
sed -i "$SGE_EDIT_SED" "$1"
"""


def missing():
    need = ["/usr/sbin/sge_qmaster", "/usr/sbin/sge_execd", f"{SGE_ROOT}/default/common/bootstrap"]
    return [p for p in need if not os.path.exists(p)] + [b for b in ("qsub", "qdel", "qconf", "qstat") if not shutil.which(b)]


class SgeCluster:
    def __init__(self, workdir):
        self.dir = workdir
        self.procs = []

    def env(self):
        return dict(os.environ, SGE_ROOT=SGE_ROOT, SGE_CELL="default")

    def qconf(self, *args, sed=None, check=False):
        env = self.env()
        if sed:
            env.update(EDITOR=self.editor, SGE_EDIT_SED=sed)
        return subprocess.run(["qconf", *args], env=env, capture_output=True, text=True, check=check)

    def __enter__(self):
        # "commlib error: local host name error": map this host's name to localhost.
        with open(f"{SGE_ROOT}/default/common/host_aliases", "w") as f:
            f.write(f"localhost {socket.gethostname()}\n")
        self.editor = os.path.join(self.dir, "sge_edit.sh")
        with open(self.editor, "w") as f:
            f.write(EDITOR)
        os.chmod(self.editor, 0o755)
        self._start("/usr/sbin/sge_qmaster", "qmaster")
        wait_until(lambda: self.qconf("-sh").returncode == 0, "sge_qmaster")
        self.qconf("-mconf", "global", sed="s/^min_uid .*/min_uid 0/;s/^min_gid .*/min_gid 0/", check=True)
        host = os.path.join(self.dir, "exechost")
        with open(host, "w") as f:
            f.write("hostname localhost\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\n"
                    "xuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n")
        self.qconf("-Ae", host)  # fails harmlessly if it exists
        self.qconf("-as", "localhost")
        if "all.q" not in self.qconf("-sql").stdout:
            self.qconf("-aq", "all.q", sed="s/^qname .*/qname all.q/;s/^hostlist .*/hostlist localhost/;"
                                            "s/^slots .*/slots 8/;s/^pe_list .*/pe_list NONE/;"
                                            "s/^load_thresholds .*/load_thresholds NONE/", check=True)
        self._start("/usr/sbin/sge_execd", "execd")

        def queue_up():
            r = subprocess.run(["qstat", "-f"], env=self.env(), capture_output=True, text=True)
            return "all.q@localhost" in r.stdout and " au" not in r.stdout and "-NA-" not in r.stdout
        wait_until(queue_up, "the SGE queue", 60)
        return self

    def _start(self, binary, name):
        env = dict(self.env(), SGE_ND="1")
        log = open(os.path.join(self.dir, name + ".log"), "w")
        self.procs.append(subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def __exit__(self, *exc):
        jobs = subprocess.run(["qstat", "-u", "*"], env=self.env(), capture_output=True, text=True).stdout.split("\n")[2:]
        for line in jobs:
            if line.split():
                subprocess.run(["qdel", "-f", line.split()[0]], env=self.env(), capture_output=True)
        stop_all(self.procs)
