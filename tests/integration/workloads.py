"""Helpers for tests that run real workloads (runc containers, QEMU VMs) through Concord.

* fixtures(): builds (once per run, cached) the busybox rootfs tarball and the tiny bootable VM
  disk with tests/fixtures/build-images.sh, into $CONCORD_FIXTURES or a shared temp folder.
* reap(data_dir): the safety net of every test's cleanup: force-removes every runc container,
  QEMU process and overlay mount that lives under a test's data folder, so a failing test never
  leaves workloads running on the machine. Tests that check orphan cleanup call
  leftovers(data_dir) BEFORE reap() and assert it is empty.
* Agent: one `concord agent` process with its own host name and state folder.
"""
import glob
import os
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def fixtures():
    out = os.environ.get("CONCORD_FIXTURES") or os.path.join(tempfile.gettempdir(),
                                                              "concord-fixtures")
    script = os.path.join(ROOT, "tests", "fixtures", "build-images.sh")
    subprocess.run([script, out], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return out


def _runc_roots(data_dir):
    return [d for d in glob.glob(os.path.join(data_dir, "**", "runc"), recursive=True)
            if os.path.isdir(d)]


def _qemu_pids(data_dir):
    pids = []
    for pidfile in glob.glob(os.path.join(data_dir, "**", "*.pid"), recursive=True):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip() or "0")
        except (OSError, ValueError):
            continue
        if pid <= 0:
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"qemu" in cmd:
            pids.append(pid)
    return pids


def _runc_containers(root):
    p = subprocess.run(["runc", "--root", root, "list", "-q"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=30)
    return [c for c in p.stdout.decode().split() if c]


def leftovers(data_dir):
    """Workloads still present under data_dir: runc containers and live QEMU processes."""
    found = []
    for root in _runc_roots(data_dir):
        found += ["runc:" + c for c in _runc_containers(root)]
    found += ["qemu:%d" % p for p in _qemu_pids(data_dir)]
    return found


def reap(data_dir):
    for root in _runc_roots(data_dir):
        for c in _runc_containers(root):
            subprocess.run(["runc", "--root", root, "delete", "-f", c], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
    for pid in _qemu_pids(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    real = os.path.realpath(data_dir)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m.startswith(real + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Agent:
    """A `concord agent` process (its own host name and state folder)."""

    def __init__(self, binary, server_url, credential, host, state_dir, extra_args=()):
        self.cmd = [binary, "agent", "--agent.server_url=" + server_url,
                    "--agent.host=" + host, "--agent.credential=" + credential,
                    "--agent.state_dir=" + state_dir, "--data_dir=" + state_dir,
                    "--log.level=" + os.environ.get("CONCORD_LOG_LEVEL", "warn")] + list(extra_args)
        self.host = host
        self.state_dir = state_dir
        self.log_path = state_dir + ".log"
        self.proc = None

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def credential(binary, data_dir, host):
    p = subprocess.run([binary, "agent-credential", host, "--data_dir=" + data_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=True)
    return p.stdout.decode().strip()


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))
