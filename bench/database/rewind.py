"""A forked PostgreSQL 15 primary brought back as a standby of its promoted standby: pg_rewind
(what Concord does first) against a full pg_basebackup copy (its fallback), side by side.

No Concord binary: Debian's PostgreSQL 15 tools with the flags Concord's engine passes
(src/database/engine/postgres_replication.cc, pg_rewind_data and pg_clone_data), as the
concord-db user, in a temp folder under /var/tmp, TCP on 127.0.0.1 ports 5600-5699 (trust: a
bench; no TLS, which Concord's copies use).

Setup: initdb a primary with Concord's settings for a group member on a volume of --volume-gb:
wal_log_hints = on, max_wal_size and wal_keep_size the volume's WAL budget (an eighth, 64 MB to
1 GB; --wal-keep-size overrides the keep), min_wal_size the smaller of 80 MB and half of it;
everything else at PostgreSQL's defaults. `pgbench -i --scale N`, a standby made with
pg_basebackup, streaming. Then, --repeats times:

1. CHECKPOINT on the primary, `pgbench -n -T --load -c 4 -j 2`, wait until the standby has
   replayed it all, SELECT pg_promote() on the standby; 1 s more of pgbench on the old primary
   (the fork: WAL the promoted one never gets), `pg_ctl stop -m fast` of it; 1 s of pgbench on
   the promoted one, then a CHECKPOINT there (untimed; see below).
2. The stopped old primary's folder is copied twice with `cp -a` and synced (untimed).
3. Both mechanisms, in an order that alternates from one repetition to the next:
   * rewind: CHECKPOINT on the new primary (Concord runs it first: pg_rewind reads the
     upstream's timeline from its control file), `pg_rewind --target-pgdata
     --source-server --no-ensure-shutdown --progress` (--progress only to get its "need to
     copy" line), standby.signal and primary_conninfo written, postgres started;
   * copy: the folder removed (untimed: Concord removes the old one after the new one runs),
     `pg_basebackup -X stream -c fast` from the new primary, the same standby files, started.
   Each is timed until the new primary's pg_stat_replication shows it `streaming` (connected
   and caught up with everything sent, not just connected).
   A pg_rewind that fails is counted, not timed: Concord copies such a folder instead. It does
   when the fork lies further past the last shared checkpoint than wal_keep_size, since the old
   primary's shutdown checkpoint removed the WAL pg_rewind reads from there ("could not find
   previous WAL record"); the table prints that distance.
4. Checks: a row inserted on the new primary appears on both, and both have its count(*) of
   pgbench_history (the fork's history rows gone); else FAILED, and the exit status is 1.
5. The rewound folder stays as the new primary's standby and the two swap roles for the next
   repetition (a failed rewind leaves the copy instead); the copy is stopped and removed.

Prints min / median / max of each time, the copy / rewind ratios of the medians, the data
folder's size and what pg_rewind said it copied. Standard library plus Debian's
python3-psycopg2 (/usr/bin/python3); reuses backup.py's and provision.py's helpers.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psycopg2

sys.dont_write_bytecode = True  # also when run directly, without rewind.sh
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from backup import checked, emit, log, owned_dir, stats_row, stop_postgres, tree_bytes  # noqa: E402
from provision import DB_USER, PG_BIN, as_db_user, percentile  # noqa: E402

PORTS = range(5600, 5700)
DB = "bench"
MB = 1e6
STREAM_TIMEOUT = 600.0


def free_port(taken):
    """A port of 5600-5699 nothing listens on (another bench may run beside this one)."""
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port in 5600-5699 on 127.0.0.1")


def lsn_mb(a, b):
    """MB of WAL from LSN a to LSN b (both as text, X/Y)."""
    return (int(b.split("/")[0], 16) * 2**32 + int(b.split("/")[1], 16)
            - int(a.split("/")[0], 16) * 2**32 - int(a.split("/")[1], 16)) / MB


class Node:
    """One PostgreSQL server: a folder of its own (the socket too), a port, its postmaster."""

    def __init__(self, work, name, taken):
        self.name = name
        self.dir = owned_dir(work, name + "-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port(taken)
        self.taken = taken
        self.proc = None

    def conninfo(self, dbname=DB):
        return "host=127.0.0.1 port=%d user=%s dbname=%s" % (self.port, DB_USER, dbname)

    def start(self, wait=True):
        # Port, socket and address on the command line: pg_rewind and pg_basebackup take the
        # configuration files from the upstream.
        with open(os.path.join(self.dir, "postgres.log"), "ab") as out:
            self.proc = subprocess.Popen(
                ["runuser", "-u", DB_USER, "--", PG_BIN + "/postgres", "-D", self.data, "-p",
                 str(self.port), "-k", self.dir, "-c", "listen_addresses=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        if wait:
            deadline = time.monotonic() + 120
            while subprocess.run([PG_BIN + "/pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                  str(self.port)], timeout=30).returncode != 0:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("%s did not start: %s" % (self.name, self.log_tail()))
                time.sleep(0.05)

    def stop(self):
        """A fast shutdown, which ends with a clean shutdown checkpoint (what pg_rewind
        --no-ensure-shutdown wants)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            checked(as_db_user([PG_BIN + "/pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w",
                                "-t", "120"], timeout=150), "pg_ctl stop " + self.name)
        stop_postgres(self.proc)  # reaps runuser; kills the group only if still there
        self.proc = None

    def remove(self):
        if self.proc is not None:
            stop_postgres(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        self.taken.discard(self.port)

    def connect(self, dbname=DB):
        c = psycopg2.connect(self.conninfo(dbname), connect_timeout=10)
        c.autocommit = True
        return c

    def sql(self, query, args=None, dbname=DB):
        c = self.connect(dbname)
        try:
            with c.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchone() if cur.description else None
        finally:
            c.close()

    def pgbench(self, seconds):
        # -n: no vacuum (pgbench's default one also truncates pgbench_history, which the
        # checks count); -c 4 -j 2 on this 2-core machine.
        checked(subprocess.run(["/usr/bin/pgbench", "-n", "-T", str(seconds), "-c", "4", "-j",
                                "2", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB],
                               capture_output=True, text=True, timeout=seconds + 120),
                "pgbench on " + self.name)

    def make_standby_of(self, upstream):
        """standby.signal and primary_conninfo, as Concord's make_standby_of writes them after
        either mechanism; postgresql.auto.conf is rewritten whole (nothing here uses ALTER
        SYSTEM), since both mechanisms copied the upstream's."""
        for name, text in (("standby.signal", ""),
                           ("postgresql.auto.conf",
                            "primary_conninfo = 'host=127.0.0.1 port=%d user=%s "
                            "application_name=%s'\n" % (upstream.port, DB_USER, self.name))):
            path = os.path.join(self.data, name)
            with open(path, "w") as f:
                f.write(text)
            shutil.chown(path, DB_USER, DB_USER)
            os.chmod(path, 0o600)

    def log_tail(self, lines=8):
        try:
            with open(os.path.join(self.dir, "postgres.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_streaming(primary, standby, t0):
    """Seconds from t0 until `primary` shows `standby` streaming: pg_stat_replication's state
    leaves 'catchup' once the standby has everything the primary sent so far."""
    c = primary.connect("postgres")
    try:
        with c.cursor() as cur:
            while True:
                cur.execute("SELECT state FROM pg_stat_replication WHERE application_name = %s",
                            (standby.name,))
                row = cur.fetchone()
                if row and row[0] == "streaming":
                    return time.monotonic() - t0
                if standby.proc is not None and standby.proc.poll() is not None:
                    raise RuntimeError("%s exited: %s" % (standby.name, standby.log_tail()))
                if time.monotonic() - t0 > STREAM_TIMEOUT:
                    raise RuntimeError("%s not streaming after %.0f s: %s" % (
                        standby.name, STREAM_TIMEOUT, standby.log_tail()))
                time.sleep(0.02)
    finally:
        c.close()


def rewind(primary, node):
    """Concord's pg_rewind_data: CHECKPOINT on the upstream, pg_rewind, standby files; then
    started until streaming. (pg_rewind s, total s, what pg_rewind says it copies in MB)."""
    t0 = time.monotonic()
    primary.sql("CHECKPOINT")
    t1 = time.monotonic()
    p = as_db_user([PG_BIN + "/pg_rewind", "--target-pgdata=" + node.data,
                    "--source-server=" + primary.conninfo("postgres"), "--no-ensure-shutdown",
                    "--progress"], timeout=3600)
    t2 = time.monotonic()
    checked(p, "pg_rewind")
    # Its own summary (divergence point, shared checkpoint, "need to copy"), not the progress.
    for ln in p.stderr.splitlines():
        if ln.startswith("pg_rewind:"):
            log("  " + ln)
    m = re.search(r"need to copy (\d+) MB", p.stderr)
    node.make_standby_of(primary)
    node.start(wait=False)
    return t2 - t1, wait_streaming(primary, node, t0), float(m.group(1)) if m else float("nan")


def copy(primary, node):
    """Concord's pg_clone_data: pg_basebackup -X stream -c fast, standby files; then started
    until streaming. (pg_basebackup s, total s, MB of the new folder)."""
    shutil.rmtree(node.data)
    t0 = time.monotonic()
    checked(as_db_user([PG_BIN + "/pg_basebackup", "-D", node.data, "-d",
                        primary.conninfo("postgres"), "-X", "stream", "-c", "fast",
                        "--no-password"], timeout=3600), "pg_basebackup")
    t1 = time.monotonic()
    node.make_standby_of(primary)
    node.start(wait=False)
    return t1 - t0, wait_streaming(primary, node, t0), tree_bytes(node.data) / MB


def verify(primary, standbys, rep):
    """A row written on the primary reaches every standby, and each then has the primary's
    count of pgbench_history (rows of the fork would make it differ). Problems, as text."""
    primary.sql("INSERT INTO rewind_marker VALUES (%s)", (rep,))
    want = primary.sql("SELECT count(*) FROM pgbench_history")[0]
    problems = []
    for node in standbys:
        deadline = time.monotonic() + 60
        seen = False
        while time.monotonic() < deadline:
            try:
                seen = node.sql("SELECT count(*) FROM rewind_marker WHERE rep = %s",
                                (rep,))[0] == 1
            except psycopg2.OperationalError:
                seen = False  # not consistent yet: it answers once it is
            if seen:
                break
            time.sleep(0.05)
        if not seen:
            problems.append("%s: the marker row of repetition %d never arrived" % (node.name,
                                                                                   rep))
            continue
        got = node.sql("SELECT count(*) FROM pgbench_history")[0]
        if got != want:
            problems.append("%s: pgbench_history has %d rows, the primary %d" % (node.name, got,
                                                                                 want))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=50,
                    help="pgbench -i scale (default 50, ~750 MB of data; 15 MB per unit)")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--load", type=int, default=3,
                    help="seconds of pgbench on the primary before the promotion (default 3)")
    ap.add_argument("--volume-gb", type=int, default=2,
                    help="the volume Concord would give the instance (default 2: scale 50 is "
                         "~750 MB): max_wal_size and wal_keep_size are its WAL budget")
    ap.add_argument("--wal-keep-size",
                    help="wal_keep_size of both servers instead (e.g. 64MB, Concord's until "
                         "2026-12-04): the old primary's WAL past its last checkpoint, which "
                         "pg_rewind needs back to the checkpoint before the fork")
    ap.add_argument("--results", help="also append the table to this file")
    args = ap.parse_args()
    if args.repeats < 1 or args.scale < 1 or args.load < 1 or args.volume_gb < 1:
        ap.error("--repeats, --scale, --load and --volume-gb must be at least 1")
    # Concord's pg_wal_budget_mb and default_parameters (src/database/engine/parameters.cc).
    budget_mb = min(max(args.volume_gb * 1024 // 8, 64), 1024)
    args.max_wal_size = "%dMB" % budget_mb
    args.min_wal_size = "%dMB" % min(80, budget_mb // 2)
    args.wal_keep_size = args.wal_keep_size or args.max_wal_size
    if args.results:
        args.results = os.path.abspath(args.results)
    # The engine user's tools start in the current folder, which it may not be able to enter.
    os.chdir("/")
    # A plain kill (SIGTERM) still runs the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = tempfile.mkdtemp(prefix="concord-rewind-", dir="/var/tmp")
    os.chmod(work, 0o755)
    taken = set()
    nodes = []
    names = iter("n%d" % i for i in range(1, 1000))

    def new_node():
        nodes.append(Node(work, next(names), taken))
        return nodes[-1]

    s = {k: [] for k in ("rw_s", "rw_total", "rw_mb", "cp_s", "cp_total", "cp_mb", "fork_wal",
                         "folder_mb", "wal_mb")}
    failed = []
    rewind_failed = []
    load_before = os.getloadavg()
    t_start = time.monotonic()
    try:
        primary = new_node()
        checked(as_db_user([PG_BIN + "/initdb", "-D", primary.data, "-U", DB_USER, "-E", "UTF8",
                            "--locale=C.UTF-8", "--auth=trust", "--no-instructions"],
                           timeout=300), "initdb")
        with open(os.path.join(primary.data, "postgresql.conf"), "a") as f:
            f.write("wal_level = replica\nwal_log_hints = on\nwal_keep_size = '%s'\n"
                    "max_wal_size = '%s'\nmin_wal_size = '%s'\n"
                    % (args.wal_keep_size, args.max_wal_size, args.min_wal_size))
        primary.start()
        primary.sql("CREATE DATABASE " + DB, dbname="postgres")
        t0 = time.monotonic()
        # Server-side data generation (G): the same tables, without every row through COPY.
        checked(subprocess.run(["/usr/bin/pgbench", "-i", "-q", "--init-steps=dtGvp", "-s",
                                str(args.scale), "-h", "127.0.0.1", "-p", str(primary.port),
                                "-U", DB_USER, DB], capture_output=True, text=True,
                               timeout=3600), "pgbench -i")
        primary.sql("CREATE TABLE rewind_marker (rep int)")
        log("%s: pgbench -i --scale %d in %.1f s" % (primary.name, args.scale,
                                                     time.monotonic() - t0))
        standby = new_node()
        checked(as_db_user([PG_BIN + "/pg_basebackup", "-D", standby.data, "-d",
                            primary.conninfo("postgres"), "-X", "stream", "-c", "fast"],
                           timeout=3600), "pg_basebackup")
        standby.make_standby_of(primary)
        standby.start(wait=False)
        wait_streaming(primary, standby, time.monotonic())
        log("%s: standby of %s, streaming" % (standby.name, primary.name))

        for rep in range(1, args.repeats + 1):
            # The last checkpoint both histories share: the fork lies --load + 1 s of writes
            # past it (a real one lies anywhere within checkpoint_timeout; pg_rewind then
            # copies back every block written since, and fails past wal_keep_size).
            primary.sql("CHECKPOINT")
            shared = primary.sql("SELECT pg_current_wal_lsn()::text")[0]
            primary.pgbench(args.load)
            # The standby promoted with all of the load, so the fork is exactly the second
            # written below, the same in every repetition.
            end = primary.sql("SELECT pg_current_wal_lsn()::text")[0]
            deadline = time.monotonic() + 120
            while standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (end,))[0] \
                    is not True:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s did not replay up to %s" % (standby.name, end))
                time.sleep(0.05)
            if standby.sql("SELECT pg_promote()")[0] is not True:
                raise RuntimeError("pg_promote() on %s failed" % standby.name)
            old, primary = primary, standby
            old.pgbench(1)
            fork_end = old.sql("SELECT pg_current_wal_lsn()::text")[0]
            old.stop()
            primary.pgbench(1)
            # Both mechanisms start from a checkpointed new primary: the one that goes first
            # does not pay for flushing the fork's writes while the second gets it free (the
            # promotion's own checkpoint is a spread one, still running here).
            primary.sql("CHECKPOINT")
            s["fork_wal"].append(lsn_mb(shared, fork_end))
            s["folder_mb"].append(tree_bytes(primary.data) / MB)
            # PostgreSQL 15's pg_rewind copies the source's pg_wal whole (recycled segments
            # too), pg_basebackup only the WAL its copy needs: most of the difference.
            s["wal_mb"].append(tree_bytes(os.path.join(primary.data, "pg_wal")) / MB)

            rw, cp = new_node(), new_node()
            for n in (rw, cp):
                checked(subprocess.run(["cp", "-a", old.data, n.data], capture_output=True,
                                       text=True, timeout=3600), "cp -a")
            old.remove()
            nodes.remove(old)
            # The copies' dirty pages written back now, not during the measurement.
            os.sync()

            def do_rewind():
                try:
                    t, total, mb = rewind(primary, rw)
                except RuntimeError as ex:
                    # Not a wrong result: Concord copies such a folder instead (the copy below).
                    why = [ln for ln in str(ex).splitlines() if "error:" in ln] or [str(ex)]
                    rewind_failed.append("repetition %d: %s" % (rep, why[-1].strip()))
                    log("rep %d rewind (%s) failed: %s" % (rep, rw.name, ex))
                    return
                s["rw_s"].append(t)
                s["rw_total"].append(total)
                s["rw_mb"].append(mb)
                log("rep %d rewind (%s): pg_rewind %.2f s, streaming after %.2f s, "
                    "need to copy %.0f MB (load %.2f)" % (rep, rw.name, t, total, mb,
                                                          os.getloadavg()[0]))

            def do_copy():
                t, total, mb = copy(primary, cp)
                s["cp_s"].append(t)
                s["cp_total"].append(total)
                s["cp_mb"].append(mb)
                log("rep %d copy (%s): pg_basebackup %.2f s, streaming after %.2f s, %.0f MB "
                    "(load %.2f)" % (rep, cp.name, t, total, mb, os.getloadavg()[0]))

            for step in ((do_rewind, do_copy) if rep % 2 else (do_copy, do_rewind)):
                step()
            running = [n for n in (rw, cp) if n.proc is not None]
            problems = verify(primary, running, rep)
            for p in problems:
                failed.append("repetition %d: %s" % (rep, p))
                log("FAILED " + p)
            if not problems:
                log("rep %d: %s checked (marker row, pgbench_history count)" % (
                    rep, " and ".join(n.name for n in running)))
            # The rewound folder is the next repetition's standby, unless the rewind failed.
            keep = rw if rw.proc is not None and not any(rw.name + ":" in p
                                                          for p in problems) else cp
            drop = cp if keep is rw else rw
            drop.remove()
            nodes.remove(drop)
            standby = keep
    finally:
        for n in nodes:
            try:
                n.remove()
            except Exception as ex:  # noqa: BLE001 (the others are still stopped)
                print("cleanup: %s: %s" % (n.name, ex), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    def med(k):
        return percentile(s[k], 0.5)

    lines = [
        "Command: `%s`  " % os.environ.get("BENCH_COMMAND",
                                           " ".join(["rewind.py"] + sys.argv[1:])),
        "Date: %s UTC; Debian PostgreSQL 15 tools (%s), no Concord binary; wall time %.0f s  "
        % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), PG_BIN, time.monotonic() - t_start),
        "Load average (1/5/15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f (%d cores, "
        "shared)  " % (load_before + load_after + (os.cpu_count(),)),
        "Data: pgbench -i --scale %d; the new primary's data folder %.0f MB, of which pg_wal "
        "%.0f MB (medians); fork: %d s of pgbench after the shared checkpoint, the promotion, "
        "1 s more on the old primary (%.1f MB of WAL since that checkpoint, median); "
        "a %d GB volume's settings: max_wal_size %s, wal_keep_size %s"
        % (args.scale, med("folder_mb"), med("wal_mb"), args.load, med("fork_wal"),
           args.volume_gb, args.max_wal_size, args.wal_keep_size),
        "",
        "| case | n | min | median | max |", "|---|---|---|---|---|"]
    for key, name, fmt in (
            ("rw_s", "pg_rewind, s", "%.2f"),
            ("rw_total", "rewind: CHECKPOINT + pg_rewind + start until streaming, s", "%.2f"),
            ("cp_s", "pg_basebackup -X stream -c fast, s", "%.2f"),
            ("cp_total", "copy: pg_basebackup + start until streaming, s", "%.2f"),
            ("rw_mb", "pg_rewind copied (its \"need to copy\"), MB", "%.0f"),
            ("cp_mb", "pg_basebackup copied (the new folder), MB", "%.0f")):
        lines.append(stats_row(name, s[key], fmt) if s[key] else "| %s | 0 | | | |" % name)
    lines.append("| pg_rewind failed (Concord copies instead) | %d | %d of %d | | |" % (
        args.repeats, len(rewind_failed), args.repeats))
    lines.append("")
    if s["rw_s"] and s["cp_s"]:
        lines.append("- **copy / rewind, medians: the tool %.1fx, until streaming %.1fx**" % (
            med("cp_s") / med("rw_s"), med("cp_total") / med("rw_total")))
    lines += ["- pg_rewind failed, %s" % f for f in rewind_failed]
    if rewind_failed:
        lines.append("- a fork further from the last shared checkpoint than wal_keep_size "
                     "(the old primary's shutdown checkpoint removed that WAL) cannot be "
                     "rewound: try a larger --wal-keep-size or a shorter --load")
    lines += ["- FAILED: " + f for f in failed] or [
        "- checks: every rewound and copied standby got the marker row and the primary's "
        "pgbench_history count (%d repetition%s)" % (args.repeats, "s" * (args.repeats > 1))]
    emit("\n".join(lines) + "\n", args.results)
    # A wrong result is not a figure: the run failed.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
