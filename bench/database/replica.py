"""MariaDB read replica create-to-ACTIVE: seeded from an existing backup, seeded from a backup
the server takes for the replica, and copied over the network.

One MariaDB 10.11 instance (the primary) is created through the Trove API of the real
`concord all-in-one` and loaded through its address, as the app user with the `mariadb`
client, with about --mb MB of rows (id, k, 192 hex characters of SHA-256: half-compressible,
like most real rows), in batches of INSERT ... SELECT from the sequence engine. The binlogs the
load wrote are left to be closed and shipped to the server first (the driver closes a binlog
with events at least once a minute and ships every ~10 s; the wait reads the instance's
binlog folder: every closed binlog shipped and the current one small), so that traffic is not
inside the rounds. Then, --repeats times, interleaved (each round starts with the next case,
so the shared machine's noise hits all alike), a replica of the same primary with the same data
is made three ways (docs/design/database.md, "`clone_from`", "Seeding a MariaDB replica from a
backup" and "A backup taken for the seed"):

* seed: the primary has a COMPLETED backup (one is taken when it has none: POST /backups until
  COMPLETED, printed but not part of the figure; a later seed round reuses it). The server
  offers it as the replica's seed; the replica's agent fetches and restores it (mariadb-backup,
  physical), replays the binlogs archived since, then streams from the primary.
* first: every backup of the primary is deleted first, so the server takes one for the replica
  (its "Replication snapshot") and the replica waits for it, then seeds from it: the backup is
  inside the figure. This is what a replica of a primary without a backup costs now.
* network: every backup is deleted and the project's backups quota set to 0 (restored after
  the POST), so no backup can be taken: the replica's agent copies the running primary
  logically (mariadb-dump --single-transaction over TLS, loaded into a private server), then
  streams. This is what such a replica cost before.

Each: POST /instances {"replica_of": primary}, then GET every --poll-ms until ACTIVE: the time
from sending the POST to the first ACTIVE answer. Then the replica's `replica_copy` record (in
its instance folder on this host, the all-in-one's agent) must name the method expected, else
the run fails (the figures would be meaningless); its row count must reach the primary's
(polled, bounded; the seconds after ACTIVE are printed); it is deleted and its 404 awaited.
Prints min / median / max per case, MB/s of the data size (SUM(data_length + index_length)
of the app database after ANALYZE) at the median, and the network / seed and network / first
ratios of the medians.
Standard library only (/usr/bin/python3); reuses bench/database/backup.py's and provision.py's
server start-up and Trove helpers.
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup  # noqa: E402  (imports provision, which puts tests/integration on sys.path)
from backup import APP_DB, APP_PW, APP_USER, ENGINE_ROOT, MB, checked, log  # noqa: E402
from provision import percentile  # noqa: E402

MARIADB = "/usr/bin/mariadb"
# Data + index bytes per row of `items` as InnoDB stores it (~225 clustered, ~25 for KEY(k),
# which fills in random order): only to size the load; the table reports what was measured.
ROW_BYTES = 250
BATCH_ROWS = 100000
# The current binlog counts as holding none of the load once it is smaller than this.
SMALL_BINLOG = 1 << 20


def client(ip, query, timeout=3600):
    """One statement through the instance's address (the endpoint), as the app user."""
    return subprocess.run(
        [MARIADB, "--no-defaults", "-h", ip, "-P", "3306", "--protocol=TCP", "-u", APP_USER,
         "--database=" + APP_DB, "--connect-timeout=10", "-N", "-B", "-e", query],
        env={"PATH": "/usr/bin:/bin", "MYSQL_PWD": APP_PW}, capture_output=True, text=True,
        timeout=timeout)


def sql(ip, query, timeout=3600):
    return checked(client(ip, query, timeout), "mariadb " + query[:60]).stdout.strip()


def copy_record(iid):
    """How the replica's data was copied, as its engine recorded it: `backup <id> <gtid>` or
    `network <gtid>`."""
    found = glob.glob(os.path.join(ENGINE_ROOT, "*", iid, "**", "replica_copy"), recursive=True)
    if len(found) != 1:
        raise RuntimeError("replica %s: %d replica_copy records under %s: %s" % (
            iid, len(found), ENGINE_ROOT, found))
    with open(found[0]) as f:
        return f.read().strip()


def settle_binlogs(engine_dir, timeout=600):
    """Waits until the binlogs the load wrote are closed and shipped: every binlog before the
    current one shipped (binlog/shipped holds the last shipped number) and the current one
    small. The driver closes a binlog with events at least once a minute and ships every ~10 s,
    so this takes up to ~70 s. Returns (seconds waited, bytes of the closed binlogs still on
    the host)."""
    binlog = os.path.join(engine_dir, "binlog")
    t0 = time.monotonic()
    state = "no binlog folder"
    while time.monotonic() - t0 < timeout:
        names = os.listdir(binlog) if os.path.isdir(binlog) else []
        # The history the server writes now: the basename of the newest .index.
        indexes = sorted((n for n in names if n.endswith(".index")),
                         key=lambda n: os.stat(os.path.join(binlog, n)).st_mtime)
        if indexes:
            base = indexes[-1][:-len(".index")]
            files = {}
            for n in names:
                m = re.fullmatch(re.escape(base) + r"\.(\d+)", n)
                if m:
                    files[int(m.group(1))] = os.path.join(binlog, n)
            try:
                with open(os.path.join(binlog, "shipped")) as f:
                    shipped = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                shipped = 0
            if files:
                newest = max(files)
                current = os.path.getsize(files[newest])
                state = "current %s.%06d %d bytes, last shipped %d" % (base, newest, current,
                                                                        shipped)
                if newest - 1 <= shipped and current < SMALL_BINLOG:
                    closed = sum(os.path.getsize(p) for n, p in files.items() if n < newest)
                    return time.monotonic() - t0, closed
        time.sleep(1)
    raise RuntimeError("the load's binlogs not closed and shipped within %d s (%s)" % (
        timeout, state))


class Bench(backup.Bench):
    """backup.Bench (server, Trove calls, backups) plus MariaDB primaries and replicas."""

    def create_primary(self, flavor, volume_gb):
        body = {"instance": {"name": "rbench-" + uuid.uuid4().hex[:8], "flavorRef": flavor,
                             "volume": {"size": volume_gb},
                             "datastore": {"type": "mariadb", "version": "10.11"},
                             "databases": [{"name": APP_DB}],
                             "users": [{"name": APP_USER, "password": APP_PW,
                                        "databases": [{"name": APP_DB}]}]}}
        r = self.trove("POST", "/instances", body)
        if r.status != 200:
            raise RuntimeError("create instance: %r" % r)
        return r.json()["instance"]["id"]

    def create_replica(self, primary, live, timeout):
        """POST /instances with replica_of until ACTIVE; (seconds from the POST to the first
        ACTIVE answer, the replica). Its id goes into `live` at once, for the clean-up."""
        t0 = time.monotonic()
        r = self.trove("POST", "/instances", {"instance": {
            "name": "rbench-replica-" + uuid.uuid4().hex[:8], "replica_of": primary}})
        if r.status not in (200, 202):
            raise RuntimeError("create replica: %r" % r)
        rid = r.json()["instance"]["id"]
        live.append(rid)
        inst = self.wait_instance(rid, timeout)
        return time.monotonic() - t0, inst

    def set_backups_quota(self, limit):
        """The admin project's backups quota (-1: unlimited)."""
        r = self.trove("PUT", "/mgmt/quotas/" + self.project, {"quotas": {"backups": limit}})
        if r.status != 200:
            raise RuntimeError("set the backups quota: %r" % r)

    def backups_of(self, iid):
        r = self.trove("GET", "/backups?instance_id=" + iid)
        if r.status != 200:
            raise RuntimeError("list backups: %r" % r)
        return [b for b in r.json()["backups"] if b.get("instance_id") == iid]

    def drop_backups(self, iid, timeout=300):
        """Deletes every backup of the instance and waits until each answers 404; how many."""
        gone = 0
        deadline = time.monotonic() + timeout
        while True:
            left = self.backups_of(iid)
            if not left:
                return gone
            if time.monotonic() > deadline:
                raise RuntimeError("backups of %s not gone within %d s: %s" % (
                    iid, timeout, [(b["id"], b.get("status")) for b in left]))
            for b in left:
                self.delete_backup(b["id"])
                while (self.trove("GET", "/backups/" + b["id"]).status != 404 and
                       time.monotonic() < deadline):
                    time.sleep(self.poll_s)
                gone += 1


def row(name, xs, data_bytes=None):
    med = percentile(xs, 0.5)
    return "| %s | %d | %.2f | %.2f | %.2f | %s |" % (
        name, len(xs), min(xs), med, max(xs),
        "%.1f" % (data_bytes / MB / med) if data_bytes else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=300,
                    help="about this many MB of rows (data + indexes) in the primary "
                         "(default 300)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds, each one replica of each kind (default 3)")
    ap.add_argument("--flavor", default="m1.small",
                    help="flavor of the primary and so its replicas (default m1.small: 1 vCPU, "
                         "2 GB)")
    ap.add_argument("--volume-gb", type=int, default=5,
                    help="volume of the primary and so its replicas (default 5; the server "
                         "allows 10 at most)")
    ap.add_argument("--poll-ms", type=int, default=250, help="GET interval (default 250)")
    ap.add_argument("--timeout", type=int, default=1800,
                    help="seconds a replica may take to ACTIVE (default 1800)")
    ap.add_argument("--results", help="also append the table to this file")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.mb < 1:
        ap.error("--mb must be at least 1")
    if not 1 <= args.volume_gb <= 10:
        ap.error("--volume-gb must be 1 to 10 (the server's --database.max_volume_gb)")
    if args.results:
        args.results = os.path.abspath(args.results)
    os.chdir("/")
    # A plain kill (SIGTERM) still runs the clean-up below: replicas, backups, server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cleanups = []
    concord = Bench(args.poll_ms / 1000.0)
    s = {"seed": [], "first": [], "network": [], "backup": [], "catchup": []}
    backup_sizes = []
    records = {"seed": set(), "first": set(), "network": set()}
    load_before = os.getloadavg()
    t_start = time.monotonic()
    primary = None
    replicas = []
    try:
        flavor = concord.boot(cleanups, "mariadb", args.flavor)
        primary = concord.create_primary(flavor, args.volume_gb)
        ip = concord.wait_instance(primary)["ip"][0]
        engine_dir, _ = backup.engine_folder(primary)

        n_rows = max(1, int(args.mb * MB / ROW_BYTES))
        log("primary %s on %s (engine %s); loading %d rows (~%d MB) through its address"
            % (primary, ip, engine_dir, n_rows, args.mb))
        t0 = time.monotonic()
        sql(ip, "CREATE TABLE items (id int PRIMARY KEY, k int, pad varchar(200), KEY (k))")
        for first in range(1, n_rows + 1, BATCH_ROWS):
            last = min(n_rows, first + BATCH_ROWS - 1)
            sql(ip, "INSERT INTO items SELECT seq, seq %% 1000, CONCAT(SHA2(seq, 256), "
                    "SHA2(seq + 1000000007, 256), SHA2(seq + 2000000014, 256)) "
                    "FROM seq_%d_to_%d" % (first, last))
        load_s = time.monotonic() - t0
        sql(ip, "ANALYZE TABLE items")
        rows = int(sql(ip, "SELECT COUNT(*) FROM items"))
        data_bytes = int(sql(ip, "SELECT SUM(data_length + index_length) FROM "
                                 "information_schema.tables WHERE table_schema = '%s'" % APP_DB))
        log("loaded %d rows in %.1f s: %.1f MB (data + indexes); waiting for its binlogs to "
            "be closed and shipped" % (rows, load_s, data_bytes / MB))
        settle_s, binlog_bytes = settle_binlogs(engine_dir)
        log("binlogs shipped after %.1f s more (%.1f MB of closed binlogs on the primary)"
            % (settle_s, binlog_bytes / MB))

        cases = ("seed", "first", "network")
        for i in range(args.repeats):
            # Each round starts with another case, so the shared machine's noise hits all alike.
            for case in cases[i % 3:] + cases[:i % 3]:
                concord.wait_instance(primary)
                if case == "seed":
                    done = [b for b in concord.backups_of(primary)
                            if b.get("status") == "COMPLETED"]
                    if done:
                        # The server seeds from the newest.
                        bid = max(done, key=lambda b: b.get("created", ""))["id"]
                        note = "backup %s reused" % bid
                    else:
                        t, bid, size = concord.backup(primary)
                        concord.wait_instance(primary)  # BACKUP -> ACTIVE before the replica
                        s["backup"].append(t)
                        backup_sizes.append(size)
                        note = "backup %s taken in %.2f s (%.1f MB archive, not in the figure)" \
                            % (bid, t, size / MB)
                    want = "backup %s " % bid
                elif case == "first":
                    # No backup: the server takes one for the replica, inside the figure.
                    note = "%d backups deleted" % concord.drop_backups(primary)
                    want = "backup "
                else:
                    # No backup and no room for one (the backups quota at 0): the dump.
                    note = "%d backups deleted, backups quota 0" % concord.drop_backups(primary)
                    concord.set_backups_quota(0)
                    want = "network "
                try:
                    t, rinst = concord.create_replica(primary, replicas, args.timeout)
                finally:
                    if case == "network":
                        concord.set_backups_quota(-1)
                rid = rinst["id"]
                record = copy_record(rid)
                if not record.startswith(want):
                    raise RuntimeError("round %d %s: replica %s was copied another way: "
                                       "replica_copy says %r, expected %r..." % (
                                           i + 1, case, rid, record, want))
                records[case].add(record.split()[0])
                t_active = time.monotonic()
                deadline = t_active + 300
                while True:
                    p = client(rinst["ip"][0], "SELECT COUNT(*) FROM items", timeout=120)
                    got = p.stdout.strip() if p.returncode == 0 else p.stderr.strip()[-200:]
                    if got == str(rows):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("round %d %s: replica %s has %r rows 300 s after "
                                           "ACTIVE, the primary %d" % (i + 1, case, rid, got,
                                                                       rows))
                    time.sleep(0.5)
                s["catchup"].append(time.monotonic() - t_active)
                s[case].append(t)
                concord.delete(rid)
                replicas.remove(rid)
                log("round %d %s: replica ACTIVE in %.2f s (%s; %s; rows matched %.1f s after "
                    "ACTIVE; load %.2f)" % (i + 1, case, t, note, record,
                                            s["catchup"][-1], os.getloadavg()[0]))
    finally:
        for iid in replicas + ([primary] if primary else []):
            try:
                concord.delete(iid)
            except Exception as ex:  # noqa: BLE001 (the server's cleanup reaps engines anyway)
                print("cleanup: instance %s: %s" % (iid, ex), file=sys.stderr)
        if primary:
            try:
                concord.drop_backups(primary)
            except Exception as ex:  # noqa: BLE001
                print("cleanup: backups: %s" % ex, file=sys.stderr)
        backup.run_cleanups(cleanups)
    load_after = os.getloadavg()

    seed_med = percentile(s["seed"], 0.5)
    first_med = percentile(s["first"], 0.5)
    net_med = percentile(s["network"], 0.5)
    lines = backup.run_header("replica.sh", concord.binary, t_start, load_before,
                              load_after) + [
        "Data: MariaDB 10.11 primary (%s, volume %d GB), table items of %d rows, %.1f MB data + "
        "indexes (the MB/s numerator); load took %.1f s, closing and shipping its binlogs "
        "%.1f s more; replica_copy said %s / %s / %s in the seed / first / network rounds" % (
            args.flavor, args.volume_gb, rows, data_bytes / MB, load_s, settle_s,
            *("/".join(sorted(records[c])) or "-" for c in ("seed", "first", "network"))),
        "",
        "| case | n | min s | median s | max s | MB/s at the median |",
        "|---|---|---|---|---|---|"]
    lines.append(row("seed: replica from the primary's existing backup + archived binlogs, "
                     "POST to ACTIVE", s["seed"], data_bytes))
    lines.append(row("first: no backup, the server takes one for the replica and seeds from it, "
                     "POST to ACTIVE", s["first"], data_bytes))
    lines.append(row("network: no backup and no room for one, mariadb-dump of the running "
                     "primary, POST to ACTIVE", s["network"], data_bytes))
    if s["backup"]:
        lines.append(row("backup of the primary for the seed rounds (POST /backups to "
                         "COMPLETED; not in the seed figure)", s["backup"], data_bytes))
    lines.append(row("replica rows equal to the primary's, after ACTIVE (all cases)",
                     s["catchup"]))
    lines.append("")
    if backup_sizes:
        lines.append("- backup archive: %.1f MB (median of %d)" % (
            percentile([b / MB for b in backup_sizes], 0.5), len(backup_sizes)))
    lines.append("- network/seed ratio of the medians: %.2f; network/first: %.2f (how many "
                 "times as fast a replica of a primary without a backup is now)"
                 % (net_med / seed_med, net_med / first_med))
    backup.emit("\n".join(lines) + "\n", args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
