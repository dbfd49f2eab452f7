"""Backup and restore throughput of Concord's managed PostgreSQL against plain pg_basebackup.

One PostgreSQL 15 instance is created through the Trove API of the real `concord all-in-one`
and loaded with `pgbench -i --scale N` through its endpoint (and, with --random-mb, a table of
incompressible random bytes, since pgbench's padded rows shrink ~20x under zstd); its WAL is
left to be archived and shipped to the server first, so that traffic is not inside the rounds.
Then, --repeats times, interleaved (the order of Concord and the anchor alternates from one
repetition to the next, so the shared machine's noise hits both alike):

* concord backup: POST /backups, then GET every --poll-ms until COMPLETED: the agent runs
  pg_basebackup (-Ft -X stream, client-side zstd level 1, fast checkpoint), compresses
  pg_wal.tar, packs one tar and uploads it to the server's blob store with a SHA-256 check.
* anchor backup: what a DBA runs by hand against the same engine, as the engine user over the
  instance's socket folder: pg_basebackup -D <dir> -Ft -X stream --compress=client-zstd:1
  --checkpoint=fast (the fast checkpoint as Concord asks, so both start copying at once).
* concord restore: POST /instances with "restorePoint": {"backupRef": <that backup>} until
  ACTIVE (download, verify, unpack, start, apply users/databases). Deleted afterwards, as is the
  backup.
* anchor restore: unpack the anchor's base.tar.zst and pg_wal.tar into a fresh folder and start
  postgres on it (as the engine user, socket only, no archiving) until pg_isready answers.

Throughput is the instance's database size (the sum of pg_database_size over pg_database, read
once after the load) divided by the time; the data folder's size (with pg_wal) is printed too.
Prints min / median / max per case and the Concord / anchor ratio of the median throughputs.
Standard library only (/usr/bin/python3); reuses bench/database/provision.py's server start-up.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import provision  # noqa: E402  (also puts tests/integration on sys.path)
from provision import DB_USER, PG_BIN, as_db_user, free_port, percentile  # noqa: E402

ENGINE_ROOT = "/var/lib/concord/database"
APP_USER = "bench"
APP_PW = "Bench-pw-1"
APP_DB = "bench"
MB = 1e6  # throughputs in MB/s (10^6 bytes), as pg_basebackup and du -b count bytes


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S", time.gmtime()), msg), file=sys.stderr,
          flush=True)


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def owned_dir(parent, prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    shutil.chown(d, DB_USER, DB_USER)
    os.chmod(d, 0o700)
    return d


def checked(p, what):
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (what, p.returncode, (p.stderr or "")[-800:]))
    return p


def run_cleanups(cleanups):
    """The server start-up's clean-ups, last registered first; a failing one is reported and
    the others still run."""
    for fn in reversed(cleanups):
        try:
            fn()
        except Exception as ex:  # noqa: BLE001
            print("cleanup:", ex, file=sys.stderr)


def run_header(script, binary, t_start, load_before, load_after):
    """The table's first lines: the command, when and with what binary, the machine's load."""
    return [
        "Command: `%s`  " % os.environ.get("BENCH_COMMAND", " ".join([script] + sys.argv[1:])),
        "Date: %s UTC; binary %s; wall time %.0f s  " % (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime()), binary, time.monotonic() - t_start),
        "Load average (1/5/15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f (%d cores, "
        "shared)  " % (load_before + load_after + (os.cpu_count(),))]


def emit(text, results):
    """Prints the table and appends it to `results` (when given), so runs of one day with
    other options stay side by side."""
    print(text)
    if results:
        with open(results, "a") as f:
            f.write(("\n" if f.tell() else "") + text)


class Bench(provision.Concord):
    """provision.Concord (server, admin project, Trove calls) plus backups and restores."""

    def boot(self, cleanups, engine, flavor_name):
        """Starts the server, waits for an agent offering `engine`; the id of `flavor_name`."""
        log("starting concord (%s)" % self.binary)
        self.start(cleanups)
        self.wait_for_host(engine)
        flavors = self.trove("GET", "/flavors").json()["flavors"]
        return str(next(f for f in flavors if f["name"] == flavor_name)["id"])

    def wait_instance(self, iid, timeout=600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            g = self.trove("GET", "/instances/" + iid)
            inst = g.json()["instance"] if g.status == 200 else {}
            if inst.get("status") in ("ACTIVE", "HEALTHY"):
                return inst
            if inst.get("status") == "ERROR":
                raise RuntimeError("instance %s went to ERROR: %s\n%s" % (
                    iid, inst.get("fault"), self.srv.log_tail(40)))
            time.sleep(self.poll_s)
        raise RuntimeError("instance %s not ACTIVE within %d s\n%s" % (
            iid, timeout, self.srv.log_tail(40)))

    def create(self, flavor, volume_gb, restore_from=None):
        """POST /instances (a restore when restore_from is a backup id) until ACTIVE; returns
        (seconds from the POST to the first ACTIVE answer, the instance)."""
        body = {"instance": {"name": "bbench-" + uuid.uuid4().hex[:8], "flavorRef": flavor,
                             "volume": {"size": volume_gb},
                             "datastore": {"type": "postgresql", "version": "15"}}}
        if restore_from:
            body["instance"]["restorePoint"] = {"backupRef": restore_from}
        else:
            body["instance"]["databases"] = [{"name": APP_DB}]
            body["instance"]["users"] = [{"name": APP_USER, "password": APP_PW,
                                          "databases": [{"name": APP_DB}]}]
        t0 = time.monotonic()
        r = self.trove("POST", "/instances", body)
        if r.status != 200:
            raise RuntimeError("create instance: %r" % r)
        inst = self.wait_instance(r.json()["instance"]["id"])
        return time.monotonic() - t0, inst

    def backup(self, iid, timeout=1800):
        """POST /backups until COMPLETED; (seconds, backup id, archive bytes)."""
        t0 = time.monotonic()
        r = self.trove("POST", "/backups", {"backup": {"name": "bbench-" + uuid.uuid4().hex[:8],
                                                       "instance": iid}})
        if r.status != 202:
            raise RuntimeError("create backup: %r" % r)
        bid = r.json()["backup"]["id"]
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            g = self.trove("GET", "/backups/" + bid)
            b = g.json()["backup"] if g.status == 200 else {}
            if b.get("status") == "COMPLETED":
                elapsed = time.monotonic() - t0
                return elapsed, bid, int(round(float(b["size"]) * (1 << 30)))
            if b.get("status") == "FAILED":
                raise RuntimeError("backup %s FAILED: %s\n%s" % (
                    bid, b.get("fail_reason"), self.srv.log_tail(40)))
            time.sleep(self.poll_s)
        raise RuntimeError("backup %s not COMPLETED within %d s" % (bid, timeout))

    def delete_backup(self, bid):
        r = self.trove("DELETE", "/backups/" + bid)
        if r.status not in (202, 204, 404):
            raise RuntimeError("delete backup %s: %r" % (bid, r))


def engine_folder(iid):
    """The instance's engine folder on this host and the driver's instance.json: on the
    instance's own volume (<id>/v), or (database_volumes directory, instances made before
    volumes) the instance folder itself (database_driver.cc)."""
    found = glob.glob(os.path.join(ENGINE_ROOT, "*", iid, "instance.json"))
    if len(found) != 1:
        raise RuntimeError("instance %s: %d instance folders under %s" % (
            iid, len(found), ENGINE_ROOT))
    with open(found[0]) as f:
        stored = json.load(f)
    d = os.path.dirname(found[0])
    return (os.path.join(d, "v") if stored.get("volume") == "loop" else d), stored


class Engine:
    """The instance's engine as the agent runs it, reached the way the agent reaches it: as the
    engine user over <instance folder>/run (pg_hba: local ... trust)."""

    def __init__(self, iid):
        self.dir, stored = engine_folder(iid)
        self.port = str(stored["port"])
        self.run = os.path.join(self.dir, "run")

    def sql(self, query, database="postgres"):
        p = checked(as_db_user([PG_BIN + "/psql", "-h", self.run, "-p", self.port, "-U", DB_USER,
                                "-d", database, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query],
                               timeout=600), "psql " + query)
        return p.stdout.strip()

    def settle(self, timeout=600):
        """Closes the current WAL segment and waits until the archiver copied it and the
        agent's log shipping (every ~10 s) emptied <instance>/wal_archive: the load's few hundred
        MB of WAL otherwise travel to the server during the first rounds, on the same disk and
        cores. Returns the seconds waited."""
        t0 = time.monotonic()
        seg = self.sql("SELECT pg_walfile_name(pg_switch_wal())")
        archive = os.path.join(self.dir, "wal_archive")
        while time.monotonic() - t0 < timeout:
            done = self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")[:24]
            pending = [n for n in (os.listdir(archive) if os.path.isdir(archive) else [])
                       if not n.endswith(".tmp")]
            if done >= seg and not pending:
                return time.monotonic() - t0
            time.sleep(0.5)
        raise RuntimeError("instance WAL not archived and shipped within %d s (archived %s, "
                           "want %s; %d files waiting)" % (timeout, done, seg, len(pending)))

    def basebackup(self, out):
        """The anchor: plain pg_basebackup with the same format and compression."""
        checked(as_db_user([PG_BIN + "/pg_basebackup", "-h", self.run, "-p", self.port, "-U",
                            DB_USER, "-D", out, "-Ft", "-X", "stream",
                            "--compress=client-zstd:1", "--checkpoint=fast"], timeout=3600),
                "pg_basebackup")


def anchor_restore(backup_dir, parent):
    """Unpacks a pg_basebackup tar-format backup into a fresh folder and starts postgres on it
    until pg_isready answers; returns (seconds in all, seconds of them unpacking). Stops it and
    removes the folder."""
    d = owned_dir(parent, "anchor-restore-")
    data = os.path.join(d, "data")
    port = str(free_port())
    proc = None
    t0 = time.monotonic()
    try:
        checked(as_db_user(["install", "-d", "-m", "0700", data, data + "/pg_wal"]), "mkdir")
        base = [f for f in ("base.tar.zst", "base.tar") if os.path.exists(os.path.join(
            backup_dir, f))][0]
        wal = [f for f in ("pg_wal.tar.zst", "pg_wal.tar") if os.path.exists(os.path.join(
            backup_dir, f))][0]
        for name, into in ((base, data), (wal, data + "/pg_wal")):
            argv = ["tar", "-xf", os.path.join(backup_dir, name), "-C", into]
            if name.endswith(".zst"):
                argv.insert(1, "--zstd")
            checked(as_db_user(argv, timeout=3600), "tar " + name)
        unpacked = time.monotonic() - t0
        # The copied configuration names the source's address, port, socket folder, TLS files
        # and WAL archive: overridden on the command line, so this copy listens on a socket of
        # its own only and archives nothing into the source's folder.
        proc = subprocess.Popen(["runuser", "-u", DB_USER, "--", PG_BIN + "/postgres", "-D", data,
                                 "-p", port, "-c", "listen_addresses=", "-c",
                                 "unix_socket_directories=" + d, "-c", "ssl=off", "-c",
                                 "archive_mode=off", "-c", "hba_file=" + data + "/pg_hba.conf"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if subprocess.run([PG_BIN + "/pg_isready", "-q", "-h", d, "-p", port],
                              timeout=30).returncode == 0:
                return time.monotonic() - t0, unpacked
            if proc.poll() is not None:
                raise RuntimeError("anchor postgres exited with %d: %s" % (
                    proc.returncode, proc.stderr.read().decode(errors="replace")[-800:]))
            time.sleep(0.02)
        raise RuntimeError("anchor postgres did not answer pg_isready within 600 s")
    finally:
        if proc is not None:
            stop_postgres(proc)
        shutil.rmtree(d, ignore_errors=True)


def stop_postgres(proc):
    """A fast shutdown (SIGINT) so the postmaster releases its shared memory; kill -9 of the
    whole session only when that does not end it within a minute."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


def stats_row(name, xs, fmt="%.2f"):
    cells = [fmt % min(xs), fmt % percentile(xs, 0.5), fmt % max(xs)]
    return "| %s | %d | %s |" % (name, len(xs), " | ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=25,
                    help="pgbench -i scale (default 25, ~375 MB of data; 15 MB per unit)")
    ap.add_argument("--random-mb", type=int, default=0,
                    help="also load about this many MB of incompressible random bytes (default 0)")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions (default 5, at least 3)")
    ap.add_argument("--flavor", default="m1.small",
                    help="flavor of the instances (default m1.small: 1 vCPU, 2 GB)")
    ap.add_argument("--poll-ms", type=int, default=100, help="GET interval (default 100)")
    ap.add_argument("--results", help="also append the table to this file")
    args = ap.parse_args()
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    if args.scale < 1:
        ap.error("--scale must be at least 1")
    if args.results:
        args.results = os.path.abspath(args.results)
    # The engine user's tools start in the current folder, which it may not be able to enter.
    os.chdir("/")
    # A plain kill (SIGTERM) still runs the clean-up below: instances, server, temp folders.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Data, indexes and the WAL the load leaves behind, with room to spare.
    volume_gb = max(1, -(-(args.scale * 15 + args.random_mb) * 4 // 1024))

    work = tempfile.mkdtemp(prefix="concord-backup-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    cleanups = []
    concord = Bench(args.poll_ms / 1000.0)
    s = {k: [] for k in ("cb_s", "cb_mbs", "cb_bytes", "ab_s", "ab_mbs", "ab_bytes", "cr_s",
                         "cr_mbs", "ar_s", "ar_unpack_s", "ar_mbs")}
    load_before = os.getloadavg()
    t_start = time.monotonic()
    source = None
    restored = []
    backups = []
    try:
        flavor = concord.boot(cleanups, "postgresql", args.flavor)
        _, inst = concord.create(flavor, volume_gb)
        source = inst["id"]
        ip = inst["ip"][0]
        engine = Engine(source)
        log("instance %s on %s (engine %s:%s); pgbench -i --scale %d through its endpoint"
            % (source, ip, engine.dir, engine.port, args.scale))
        t0 = time.monotonic()
        # Server-side data generation (G): the same tables and indexes as the default, without
        # pushing every row through COPY from this client.
        checked(subprocess.run(["/usr/bin/pgbench", "-i", "-q", "--init-steps=dtGvp", "-s",
                                str(args.scale), "-h", ip, "-U", APP_USER, APP_DB],
                               env={"PATH": "/usr/bin:/bin", "PGPASSWORD": APP_PW,
                                    "PGCONNECT_TIMEOUT": "10"},
                               capture_output=True, text=True, timeout=3600), "pgbench -i")
        if args.random_mb > 0:
            # pgbench's rows are mostly blank padding (zstd makes ~20 MB of 400): random bytes
            # in 8 kB values, stored uncompressed, show what incompressible data costs.
            checked(subprocess.run(
                ["/usr/bin/psql", "-h", ip, "-U", APP_USER, "-d", APP_DB, "-X", "-q", "-v",
                 "ON_ERROR_STOP=1", "-c",
                 "CREATE TABLE bench_random (id int PRIMARY KEY, b bytea); "
                 "ALTER TABLE bench_random ALTER b SET STORAGE EXTERNAL; "
                 # Correlated (WHERE g > 0), so the 8 kB value is drawn again for every row.
                 "INSERT INTO bench_random SELECT g, (SELECT decode(string_agg(md5(random()::text"
                 " || i), ''), 'hex') FROM generate_series(1, 512) i WHERE g > 0) "
                 "FROM generate_series(1, %d) g" % (args.random_mb * 122)],
                env={"PATH": "/usr/bin:/bin", "PGPASSWORD": APP_PW, "PGCONNECT_TIMEOUT": "10"},
                capture_output=True, text=True, timeout=3600), "psql (random data)")
        load_s = time.monotonic() - t0
        engine.sql("CHECKPOINT")
        settle_s = engine.settle()
        db_bytes = int(engine.sql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        app_bytes = int(engine.sql("SELECT pg_database_size('%s')" % APP_DB))
        folder_bytes = tree_bytes(os.path.join(engine.dir, "data"))
        log("loaded in %.1f s: databases %.1f MB (%s %.1f MB), data folder %.1f MB; WAL "
            "archived and shipped after %.1f s more" % (load_s, db_bytes / MB, APP_DB,
                                                        app_bytes / MB, folder_bytes / MB,
                                                        settle_s))

        for i in range(args.repeats):
            def concord_side():
                t, bid, size = concord.backup(source)
                backups.append(bid)
                concord.wait_instance(source)  # BACKUP -> ACTIVE before anything else
                s["cb_s"].append(t)
                s["cb_mbs"].append(db_bytes / MB / t)
                s["cb_bytes"].append(size)
                t, rinst = concord.create(flavor, volume_gb, restore_from=bid)
                restored.append(rinst["id"])
                s["cr_s"].append(t)
                s["cr_mbs"].append(db_bytes / MB / t)
                concord.delete(rinst["id"])
                restored.remove(rinst["id"])
                concord.delete_backup(bid)
                backups.remove(bid)
                log("round %d concord: backup %.2f s (%.1f MB archive), restore %.2f s"
                    % (i + 1, s["cb_s"][-1], size / MB, t))

            def anchor_side():
                out_parent = owned_dir(work, "anchor-backup-")
                out = os.path.join(out_parent, "out")
                try:
                    t0 = time.monotonic()
                    engine.basebackup(out)
                    t = time.monotonic() - t0
                    size = tree_bytes(out)
                    s["ab_s"].append(t)
                    s["ab_mbs"].append(db_bytes / MB / t)
                    s["ab_bytes"].append(size)
                    tr, unpack = anchor_restore(out, work)
                    s["ar_s"].append(tr)
                    s["ar_unpack_s"].append(unpack)
                    s["ar_mbs"].append(db_bytes / MB / tr)
                finally:
                    shutil.rmtree(out_parent, ignore_errors=True)
                log("round %d anchor: pg_basebackup %.2f s (%.1f MB), restore %.2f s (unpack "
                    "%.2f s)" % (i + 1, t, size / MB, tr, unpack))

            for side in ((concord_side, anchor_side) if i % 2 == 0 else
                         (anchor_side, concord_side)):
                side()
    finally:
        for iid in restored + ([source] if source else []):
            try:
                concord.delete(iid)
            except Exception as ex:  # noqa: BLE001 (the server's cleanup reaps engines anyway)
                print("cleanup: instance %s: %s" % (iid, ex), file=sys.stderr)
        for bid in backups:
            try:
                concord.delete_backup(bid)
            except Exception as ex:  # noqa: BLE001
                print("cleanup: backup %s: %s" % (bid, ex), file=sys.stderr)
        run_cleanups(cleanups)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    med = {k: percentile(v, 0.5) for k, v in s.items()}
    lines = run_header("backup.sh", concord.binary, t_start, load_before, load_after) + [
        "Data: pgbench -i --scale %d%s (%s, volume %d GB); sum of pg_database_size %.1f MB "
        "(the throughput numerator; database %s %.1f MB); data folder with pg_wal %.1f MB; "
        "load took %.1f s, shipping its WAL %.1f s more" % (
            args.scale, " + %d MB of random bytes" % args.random_mb if args.random_mb else "",
            args.flavor, volume_gb, db_bytes / MB, APP_DB, app_bytes / MB, folder_bytes / MB,
            load_s, settle_s),
        "",
        "| case | n | min | median | max |", "|---|---|---|---|---|"]
    lines.append(stats_row("concord backup, POST /backups to COMPLETED, s", s["cb_s"]))
    lines.append(stats_row("anchor pg_basebackup -Ft -X stream zstd:1, s", s["ab_s"]))
    lines.append(stats_row("concord restore, POST /instances restorePoint to ACTIVE, s",
                           s["cr_s"]))
    lines.append(stats_row("anchor restore, untar + postgres until pg_isready, s", s["ar_s"]))
    lines.append(stats_row("  of which untar (base.tar.zst, pg_wal.tar), s", s["ar_unpack_s"]))
    lines.append(stats_row("concord backup, MB/s", s["cb_mbs"], "%.1f"))
    lines.append(stats_row("anchor backup, MB/s", s["ab_mbs"], "%.1f"))
    lines.append(stats_row("concord restore, MB/s", s["cr_mbs"], "%.1f"))
    lines.append(stats_row("anchor restore, MB/s", s["ar_mbs"], "%.1f"))
    lines.append(stats_row("concord archive (one tar, blob store), MB",
                           [b / MB for b in s["cb_bytes"]], "%.1f"))
    lines.append(stats_row("anchor archive (base.tar.zst + pg_wal.tar + manifest), MB",
                           [b / MB for b in s["ab_bytes"]], "%.1f"))
    lines.append("")
    lines.append("- backup: concord/anchor throughput ratio of the medians %.2f"
                 % (med["cb_mbs"] / med["ab_mbs"]))
    lines.append("- restore: concord/anchor throughput ratio of the medians %.2f"
                 % (med["cr_mbs"] / med["ar_mbs"]))
    emit("\n".join(lines) + "\n", args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
