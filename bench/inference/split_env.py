"""Emulated device/cloud network for split inference: used by tests/integration/
test_split_network.py and bench/inference/split_bench.py.

The device (concord-device) runs in its own network namespace behind a veth pair, optionally
rate-limited with `tc ... tbf` on both ends, and in a cgroup v1 CPU quota; the server
(`concord inference-replica --split`: the model and its tails over OIP) runs in the root namespace, optionally
in a CPU quota too, and "overloaded" adds closed-loop cloud-only clients next to it.

What cannot be emulated here: delay. This kernel has no netem (`tc qdisc ... netem` fails), so
the round trip is the veth's own (tens of microseconds plus HTTP); tbf only limits the rate.

Needs root, `ip netns`, `tc` and /sys/fs/cgroup/cpu (cgroup v1); available() says which is
missing. Names carry the process id so parallel runs do not collide; teardown() removes
everything it made (namespace, veth, qdiscs, cgroups, processes it started).
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

CGROUP_CPU = "/sys/fs/cgroup/cpu"


def available():
    """(True, "") or (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces, tc, cgroups)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False, "needs iproute2 (ip, tc)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, "`ip netns` is unavailable: " + probe.stderr.strip()
    if not os.path.isdir(CGROUP_CPU) or not os.access(CGROUP_CPU, os.W_OK):
        return False, "needs a writable cgroup v1 cpu controller at " + CGROUP_CPU
    return True, ""


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class SplitEnv:
    def __init__(self, server_bin, device_bin, workdir=None):
        self.server_bin = server_bin
        self.device_bin = device_bin
        self.workdir = workdir or tempfile.mkdtemp(prefix="concord-split-")
        pid = os.getpid() % 100000
        self.tag = f"cs{pid}"
        self.ns = f"{self.tag}ns"
        self.veth_host = f"{self.tag}h"
        self.veth_dev = f"{self.tag}d"
        octet = 16 + pid % 200
        self.host_ip = f"10.213.{octet}.1"
        self.dev_ip = f"10.213.{octet}.2"
        self.cgroups = []
        self.server = None
        self.server_log = None
        self.load = []
        self.rate = None

    # --- network ------------------------------------------------------------------------------
    def setup(self):
        self.teardown_network(quiet=True)
        run(["ip", "netns", "add", self.ns])
        run(["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_dev])
        run(["ip", "link", "set", self.veth_dev, "netns", self.ns])
        run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host])
        run(["ip", "link", "set", self.veth_host, "up"])
        nsx = ["ip", "netns", "exec", self.ns]
        run(nsx + ["ip", "addr", "add", f"{self.dev_ip}/30", "dev", self.veth_dev])
        run(nsx + ["ip", "link", "set", self.veth_dev, "up"])
        run(nsx + ["ip", "link", "set", "lo", "up"])

    def set_rate(self, rate):
        """Limits both directions to `rate` ("1mbit") with tbf, or removes the limit (None)."""
        nsx = ["ip", "netns", "exec", self.ns]
        run(["tc", "qdisc", "del", "dev", self.veth_host, "root"], check=False)
        run(nsx + ["tc", "qdisc", "del", "dev", self.veth_dev, "root"], check=False)
        self.rate = rate
        if rate is None:
            return
        tbf = ["root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"]
        run(["tc", "qdisc", "add", "dev", self.veth_host] + tbf)
        run(nsx + ["tc", "qdisc", "add", "dev", self.veth_dev] + tbf)

    def teardown_network(self, quiet=False):
        run(["ip", "netns", "del", self.ns], check=False)
        run(["ip", "link", "del", self.veth_host], check=False)

    # --- CPU quotas ---------------------------------------------------------------------------
    def cgroup(self, name, percent):
        """A cgroup v1 cpu group limited to `percent` of one CPU: 1 ms of CPU per period of
        100/percent ms, so throttling is fine-grained next to the model's milliseconds."""
        path = os.path.join(CGROUP_CPU, f"{self.tag}-{name}")
        os.makedirs(path, exist_ok=True)
        period = int(1000 * 100 / percent)
        with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
            f.write("1000")
        if path not in self.cgroups:
            self.cgroups.append(path)
        return path

    @staticmethod
    def _in_cgroup(cmd, cgroup):
        if cgroup is None:
            return cmd
        return ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh"] + cmd

    # --- server -------------------------------------------------------------------------------
    def start_server(self, model, name, cpu_percent=None):
        self.stop_server()
        port_file = os.path.join(self.workdir, "server.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cg = self.cgroup("server", cpu_percent) if cpu_percent else None
        # Batching off (one request per runtime call): an idle server then adds no batching
        # wait, and queueing under load is all real contention.
        cmd = [self.server_bin, "inference-replica", "--split", "--model", model, "--name", name,
               "--bind", self.host_ip, "--port-file", port_file, "--max-batch-size", "1",
               "--threads", "16"]
        log = open(os.path.join(self.workdir, "server.log"), "a")
        self.server_log = log
        # Started uncapped and moved into its CPU cgroup once it listens: the cap models a
        # server overloaded while serving, and loading the model under a 5% quota on a busy
        # machine could take longer than the start-up deadline (a CI run saw exactly that).
        self.server = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.time() + 60
        while not os.path.exists(port_file):
            if self.server.poll() is not None:
                raise RuntimeError(f"split server exited {self.server.returncode}; see {log.name}")
            if time.time() > deadline:
                raise RuntimeError("split server did not start within 60 s")
            time.sleep(0.05)
        if cg is not None:
            # cgroup v1 cgroup.procs moves every thread of the process.
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(self.server.pid))
        with open(port_file) as f:
            port = int(f.read().strip())
        return f"http://{self.host_ip}:{port}"

    def stop_server(self):
        self.stop_load()
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None
        if self.server_log is not None:
            self.server_log.close()
            self.server_log = None

    # --- background load ----------------------------------------------------------------------
    def start_load(self, url, model, name, clients):
        """`clients` closed-loop cloud-only clients from the root namespace (not rate-limited)."""
        for _ in range(clients):
            cmd = [self.device_bin, "--endpoint", url, "--model", model, "--name", name,
                   "--split", "cloud", "--count", "100000000", "--quiet", "--profile-runs", "1"]
            self.load.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))

    def stop_load(self):
        for p in self.load:
            if p.poll() is None:
                p.terminate()
        for p in self.load:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.load = []

    # --- device -------------------------------------------------------------------------------
    def run_device(self, url, model, name, split="auto", count=20, cpu_percent=None,
                   extra=(), timeout=900):
        """Runs concord-device in the namespace (and quota); returns its --json summary plus
        "stdout" and "returncode"."""
        cg = self.cgroup("device", cpu_percent) if cpu_percent else None
        cmd = ["ip", "netns", "exec", self.ns, self.device_bin, "--endpoint", url,
               "--model", model, "--name", name, "--split", str(split), "--count", str(count),
               "--json", "--quiet", "--report"] + list(extra)
        r = subprocess.run(self._in_cgroup(cmd, cg), capture_output=True, text=True,
                           timeout=timeout)
        summary = {}
        for line in reversed(r.stdout.splitlines()):
            if line.startswith("{"):
                summary = json.loads(line)
                break
        summary["stdout"] = r.stdout
        summary["stderr"] = r.stderr
        summary["returncode"] = r.returncode
        return summary

    def teardown(self):
        self.stop_server()
        self.teardown_network()
        for path in self.cgroups:
            try:
                os.rmdir(path)
            except OSError:
                pass
        self.cgroups = []
