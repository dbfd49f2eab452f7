"""Create-to-ACTIVE of managed databases through Concord against the raw engine bootstrap.

For each engine (PostgreSQL 15, MariaDB 10.11), in one run on one machine, interleaved round
by round so the shared machine's noise hits both alike:

* concord: POST /database/v1.0/{project}/instances, then GET every --poll-ms until ACTIVE;
  the time from sending the POST to the first ACTIVE answer. The instance is deleted (and its
  disappearance awaited) before the next one, so each create starts from the same state.
* raw: the same engine bootstrapped by hand as the concord-db user: initdb + postgres until
  pg_isready; mariadb-install-db + mariadbd until `mariadb -e 'select 1'` answers.

Then --concurrency creates at once per engine (when > 1). Prints min / median / p99 / max per
case and the Concord / raw ratio of the medians. Standard library only (/usr/bin/python3).
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import concord_launcher  # noqa: E402

ENGINES = {"postgresql": "15", "mariadb": "10.11"}
DB_USER = "concord-db"
PG_BIN = "/usr/lib/postgresql/15/bin"


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_db_user(argv, **kw):
    return subprocess.run(["runuser", "-u", DB_USER, "--"] + argv, capture_output=True,
                          text=True, **kw)


class Raw:
    """The anchor: what a person does by hand to get a running, answering engine."""

    def __init__(self, root):
        self.root = root

    def _folder(self):
        d = tempfile.mkdtemp(prefix="raw-", dir=self.root)
        shutil.chown(d, DB_USER, DB_USER)
        os.chmod(d, 0o700)
        return d

    def postgresql(self):
        d = self._folder()
        port = free_port()
        proc = None
        t0 = time.monotonic()
        try:
            r = as_db_user([PG_BIN + "/initdb", "-D", d + "/data", "-U", DB_USER, "-E", "UTF8",
                            "--locale=C.UTF-8", "--auth-local=trust",
                            "--auth-host=scram-sha-256", "--no-instructions"], timeout=300)
            if r.returncode != 0:
                raise RuntimeError("initdb: " + r.stderr[-500:])
            proc = subprocess.Popen(["runuser", "-u", DB_USER, "--", PG_BIN + "/postgres", "-D",
                                     d + "/data", "-p", str(port), "-k", d,
                                     "-c", "listen_addresses=127.0.0.1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if subprocess.run([PG_BIN + "/pg_isready", "-q", "-h", d, "-p", str(port)],
                                  timeout=30).returncode == 0:
                    return time.monotonic() - t0
                if proc.poll() is not None:
                    raise RuntimeError("postgres exited with %d" % proc.returncode)
                time.sleep(0.02)
            raise RuntimeError("postgres did not answer pg_isready within 120 s")
        finally:
            self._stop(proc)
            shutil.rmtree(d, ignore_errors=True)

    def mariadb(self):
        d = self._folder()
        os.makedirs(d + "/tmp")
        shutil.chown(d + "/tmp", DB_USER, DB_USER)
        sock = d + "/mysqld.sock"
        proc = None
        t0 = time.monotonic()
        try:
            r = as_db_user(["/usr/bin/mariadb-install-db", "--no-defaults", "--datadir=" + d +
                            "/data", "--auth-root-authentication-method=socket",
                            "--auth-root-socket-user=" + DB_USER, "--skip-test-db",
                            "--skip-name-resolve", "--tmpdir=" + d + "/tmp"], timeout=300)
            if r.returncode != 0:
                raise RuntimeError("mariadb-install-db: " + r.stderr[-500:])
            proc = subprocess.Popen(["runuser", "-u", DB_USER, "--", "/usr/sbin/mariadbd",
                                     "--no-defaults", "--datadir=" + d + "/data",
                                     "--socket=" + sock, "--port=%d" % free_port(),
                                     "--bind-address=127.0.0.1", "--tmpdir=" + d + "/tmp",
                                     "--pid-file=" + d + "/mariadbd.pid"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if os.path.exists(sock) and subprocess.run(
                        ["/usr/bin/mariadb", "--no-defaults", "-S", sock, "-u", "root", "-N",
                         "-e", "select 1"], capture_output=True, timeout=30).returncode == 0:
                    return time.monotonic() - t0
                if proc.poll() is not None:
                    raise RuntimeError("mariadbd exited with %d" % proc.returncode)
                time.sleep(0.02)
            raise RuntimeError("mariadbd did not answer within 120 s")
        finally:
            self._stop(proc)
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _stop(proc):
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


class Concord:
    def __init__(self, poll_s, binary=None, extra_args=()):
        self.poll_s = poll_s
        self.binary = binary or concord_launcher.binary()
        self.extra_args = list(extra_args)
        self.srv = None
        self.token = None
        self.project = None
        self.flavor = None

    def start(self, cleanups):
        # A pool of its own: other Concord servers on this shared machine (tests, other
        # benchmarks) hand out the default pool's first addresses too, and an engine cannot
        # listen where another already does.
        pool = "127.%d.%d.0/24" % (random.randint(100, 250), random.randint(0, 255))
        saved = os.environ.get("CONCORD_BIN")
        os.environ["CONCORD_BIN"] = self.binary  # what concord_launcher starts
        try:
            self.srv = concord_launcher.start_server(
                cleanups.append,
                extra_args=["--agent.drivers=database", "--database.max_volume_gb=10",
                            "--database.address_pool=" + pool] + self.extra_args)
        finally:
            if saved is None:
                del os.environ["CONCORD_BIN"]
            else:
                os.environ["CONCORD_BIN"] = saved
        self.token = self.srv.admin_token()
        projects = self.srv.request("GET", self.srv.v3 + "/projects?name=admin", token=self.token)
        self.project = projects.json()["projects"][0]["id"]
        flavors = self.trove("GET", "/flavors").json()["flavors"]
        # m1.tiny, as the end-to-end test uses (the smallest flavors are below an engine's floor).
        self.flavor = str(next(f for f in flavors if f["name"] == "m1.tiny")["id"])

    def trove(self, method, path, body=None):
        return self.srv.request(method, "/database/v1.0/%s%s" % (self.project, path), body,
                                token=self.token)

    def create_to_active(self, engine):
        """Seconds from sending the POST to the first ACTIVE answer; the instance id."""
        body = {"instance": {"name": "bench-" + uuid.uuid4().hex[:8], "flavorRef": self.flavor,
                             "volume": {"size": 1},
                             "datastore": {"type": engine, "version": ENGINES[engine]}}}
        t0 = time.monotonic()
        r = self.trove("POST", "/instances", body)
        if r.status != 200:
            raise RuntimeError("create %s: %r" % (engine, r))
        iid = r.json()["instance"]["id"]
        deadline = t0 + 300
        while time.monotonic() < deadline:
            g = self.trove("GET", "/instances/" + iid)
            status = g.json()["instance"]["status"] if g.status == 200 else "?"
            if status in ("ACTIVE", "HEALTHY"):
                return time.monotonic() - t0, iid
            if status == "ERROR":
                raise RuntimeError("instance %s went to ERROR: %s\n%s"
                                   % (iid, g.json()["instance"].get("fault"), self.srv.log_tail(30)))
            time.sleep(self.poll_s)
        raise RuntimeError("instance %s not ACTIVE within 300 s\n%s" % (iid, self.srv.log_tail(30)))

    def wait_for_host(self, engine):
        """The in-process agent registers its host a moment after the server is ready; until
        then a create ends in ERROR "No valid host". Retries (deleting each) for up to 60 s."""
        deadline = time.monotonic() + 60
        while True:
            try:
                _, iid = self.create_to_active(engine)
                self.delete(iid)
                return
            except RuntimeError as ex:
                if "No valid host" not in str(ex) or time.monotonic() > deadline:
                    raise
            for inst in self.trove("GET", "/instances").json().get("instances", []):
                self.delete(inst["id"])
            time.sleep(0.5)

    def delete(self, iid):
        self.trove("DELETE", "/instances/" + iid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.trove("GET", "/instances/" + iid).status == 404:
                return
            time.sleep(0.1)
        raise RuntimeError("instance %s not gone within 120 s" % iid)


def row(name, xs):
    return "| %s | %d | %.2f | %.2f | %.2f | %.2f |" % (
        name, len(xs), min(xs), percentile(xs, 0.5), percentile(xs, 0.99), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10, help="creates per engine (default 10)")
    ap.add_argument("--concurrency", type=int, default=3,
                    help="then this many creates at once per engine (default 3; 0/1: skip)")
    ap.add_argument("--poll-ms", type=int, default=100, help="GET interval (default 100)")
    ap.add_argument("--only", choices=sorted(ENGINES), action="append",
                    help="measure only this engine (repeatable)")
    ap.add_argument("--results", help="also write the table to this file")
    ap.add_argument("--baseline-bin",
                    help="another concord binary (e.g. a build of an older commit) measured in "
                         "the same run, interleaved, as 'baseline' (before/after comparisons)")
    ap.add_argument("--baseline-args", default="",
                    help="server options of the baseline (space-separated), e.g. "
                         "'--agent.database_volumes=directory' to measure what the volumes cost; "
                         "with no --baseline-bin the baseline is this binary")
    args = ap.parse_args()
    engines = args.only or ["postgresql", "mariadb"]

    work = tempfile.mkdtemp(prefix="concord-provision-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    cleanups = []
    concord = Concord(args.poll_ms / 1000.0)
    baseline = None
    if args.baseline_bin or args.baseline_args:
        baseline = Concord(args.poll_ms / 1000.0, args.baseline_bin, args.baseline_args.split())
    raw = Raw(work)
    samples = {}
    load_before = os.getloadavg()
    try:
        concord.start(cleanups)
        concord.wait_for_host(engines[0])
        if baseline:
            baseline.start(cleanups)
            baseline.wait_for_host(engines[0])
        for e in engines:
            # One unmeasured create first: a host-wide cache (a template data folder, the
            # page cache of the engine binaries) is a one-time cost, reported separately.
            first, iid = concord.create_to_active(e)
            concord.delete(iid)
            samples[("first", e)] = [first]
            print("  %s first create: %.2f s" % (e, first), file=sys.stderr, flush=True)
        for i in range(args.repeats):
            for e in engines:
                t_raw = getattr(raw, e)()
                t, iid = concord.create_to_active(e)
                concord.delete(iid)
                samples.setdefault(("raw", e), []).append(t_raw)
                samples.setdefault(("concord", e), []).append(t)
                print("  round %d %s: concord %.2f s, raw %.2f s" % (i + 1, e, t, t_raw),
                      file=sys.stderr, flush=True)
                if baseline:
                    t_base, iid = baseline.create_to_active(e)
                    baseline.delete(iid)
                    samples.setdefault(("baseline", e), []).append(t_base)
                    print("  round %d %s: baseline %.2f s" % (i + 1, e, t_base), file=sys.stderr,
                          flush=True)
        if args.concurrency > 1:
            for e in engines:
                results, errors = [], []

                def one():
                    try:
                        results.append(concord.create_to_active(e))
                    except Exception as ex:  # noqa: BLE001 (reported below)
                        errors.append(ex)
                threads = [threading.Thread(target=one) for _ in range(args.concurrency)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                for _, iid in results:
                    concord.delete(iid)
                if errors:
                    raise errors[0]
                samples[("concurrent", e)] = [t for t, _ in results]
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as ex:  # noqa: BLE001
                print("cleanup:", ex, file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    lines = ["Command: `%s`  " % os.environ.get("BENCH_COMMAND", " ".join(["provision.sh"] + sys.argv[1:])),
             "Date: %s UTC; binary %s; baseline %s  " % (
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime()), concord.binary,
                 " ".join(filter(None, [args.baseline_bin, args.baseline_args])) or "none"),
             "Load average (1/5/15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f (2 cores)"
             % (load_before + load_after), "",
             "| case | n | min s | median s | p99 s | max s |", "|---|---|---|---|---|---|"]
    for e in engines:
        lines.append(row("raw %s (bootstrap + start until it answers)" % e, samples[("raw", e)]))
        lines.append(row("concord %s create-to-ACTIVE, one at a time" % e,
                         samples[("concord", e)]))
        if ("baseline", e) in samples:
            lines.append(row("baseline %s create-to-ACTIVE, one at a time" % e,
                             samples[("baseline", e)]))
        if ("concurrent", e) in samples:
            lines.append(row("concord %s create-to-ACTIVE, %d at once" % (e, args.concurrency),
                             samples[("concurrent", e)]))
        lines.append(row("concord %s first create after start (unmeasured above)" % e,
                         samples[("first", e)]))
    lines.append("")
    for e in engines:
        c = percentile(samples[("concord", e)], 0.5)
        r = percentile(samples[("raw", e)], 0.5)
        lines.append("- %s: concord/raw median ratio %.2f; goal p50 < 5 s: %s" % (
            e, c / r, "met" if c < 5 else "NOT met"))
        if ("baseline", e) in samples:
            b = percentile(samples[("baseline", e)], 0.5)
            lines.append("- %s: baseline/raw median ratio %.2f; concord/baseline %.2f" % (
                e, b / r, c / b))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        with open(args.results, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
