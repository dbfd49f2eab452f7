"""Stable endpoints and read replicas end to end (issue 4, stage 4).

Starts `concord all-in-one` with its in-process agent running the database driver (real
PostgreSQL 15 / MariaDB 10.11 engines as the concord-db user). A tenant uses the real
`openstack database ...` CLI (python3-troveclient), `psql`, `pgbench` and `mariadb`:

* the address an instance reports is served by the server's endpoint proxy, the engine listens
  on an address of its own, and clients work through the endpoint (TLS included);
* an instance created with Concord's "pooling": "transaction" serves `pgbench -M prepared`
  (prepared statements under transaction pooling) through its endpoint;
* `instance create --replica-of`: the replica gets the primary's existing rows and later ones,
  refuses writes, and the API shows replica_of / replicas; databases and users cannot be changed
  on the replica; the primary cannot be deleted while it has replicas;
* `instance promote` of the replica: it takes writes, the old primary follows it (read-only);
* `instance detach` of the old primary: a standalone instance again, writable, not following;
* MariaDB: a replica whose replay fails (a row written on it, which the tenant's root cannot do
  there, that the primary then writes too) is made anew by its agent, with no call, and the
  events feed says so.

Needs root and the Debian packages of scripts/install-deps.sh; skips with the reason otherwise.
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import database_fixture  # noqa: E402
from database_fixture import last_line, mariadb, psql  # noqa: E402

CLOUD = None
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def setUpModule():
    global CLOUD
    # A pool of its own: see database_fixture.Cloud.
    CLOUD = database_fixture.Cloud("dbr", "127.78.4.0/24")
    database_fixture.InstanceWaits.cloud = CLOUD


def cli(*args, check=True):
    return CLOUD.cli("a", *args, check=check)


def listener(ip, port):
    """The name of the process listening on ip:port ("" when none)."""
    p = subprocess.run(["ss", "-Hltnp", "src", "%s:%d" % (ip, port)], capture_output=True,
                       text=True, timeout=10)
    line = p.stdout.strip()
    if '(("' not in line:
        return ""
    return line.split('(("', 1)[1].split('"', 1)[0]


class PostgresSql:
    """The engine-specific SQL of the replica flow, for PostgreSQL."""
    datastore, version, port = "postgresql", "15", 5432

    @staticmethod
    def run(ip, sql):
        return psql(ip, "app", "App-pw-1", "shop", sql)

    make_table = "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)"
    read_only_error = "read-only transaction"

    @staticmethod
    def databases(ip):
        p = psql(ip, "app", "App-pw-1", "shop",
                 "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
        return last_line(p).split(",") if p.returncode == 0 else []


class MariadbSql:
    datastore, version, port = "mariadb", "10.11", 3306

    @staticmethod
    def run(ip, sql):
        return mariadb(ip, "app", "App-pw-1", "shop", sql)

    make_table = "CREATE TABLE items (id INT PRIMARY KEY); INSERT INTO items VALUES (1)"
    read_only_error = "read-only"

    @staticmethod
    def databases(ip):
        # The app user sees the databases it has grants on; the replica's must match.
        p = mariadb(ip, "app", "App-pw-1", "", "SHOW DATABASES")
        return p.stdout.split() if p.returncode == 0 else []


class DatabaseReplicasTest(database_fixture.InstanceWaits, unittest.TestCase):
    def create(self, name, engine, extra=()):
        inst = cli("database", "instance", "create", name, "--flavor", "m1.tiny", "--size", "1",
                   "--datastore", engine.datastore, "--datastore-version", engine.version,
                   "--databases", "shop", "--users", "app:App-pw-1", *extra, "-f", "json")
        self.addCleanup(self.delete_quietly, inst["id"])
        return inst["id"]

    def delete_quietly(self, iid):
        if CLOUD.trove("a", "GET", "/instances/" + iid).status == 404:
            return
        cli("database", "instance", "delete", iid, check=False)
        self.wait_gone("a", iid)

    def rows(self, engine, ip):
        p = engine.run(ip, "SELECT id FROM items ORDER BY id")
        return [int(x) for x in p.stdout.split()] if p.returncode == 0 else None

    def test_endpoint_serves_the_instance(self):
        engine = PostgresSql
        iid = self.create("ep-pg", engine)
        inst = self.wait_status("a", iid)
        ip = inst["ip"][0]
        # The server's proxy listens on the tenant's address; the engine elsewhere.
        self.assertEqual(listener(ip, 5432), "concord")
        self.assertEqual(engine.run(ip, "SELECT 1").returncode, 0)
        # TLS passes through the endpoint to the engine.
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": "App-pw-1"}
        p = subprocess.run(["/usr/bin/psql", "host=%s user=app dbname=shop sslmode=require" % ip,
                            "-X", "-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = "
                            "pg_backend_pid()"], env=env, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual((p.returncode, last_line(p)), (0, "t"), p.stderr)
        # Trove's access.allowed_cidrs: the endpoint closes clients from other networks.
        r = CLOUD.trove("a", "PUT", "/instances/" + iid,
                        {"instance": {"access": {"is_public": False,
                                                 "allowed_cidrs": ["10.0.0.0/8"]}}})
        self.assertEqual(r.status, 202, r)
        shown = CLOUD.trove("a", "GET", "/instances/" + iid).json()["instance"]
        self.assertEqual(shown["access"], {"is_public": False, "allowed_cidrs": ["10.0.0.0/8"]})
        self.eventually(lambda: (engine.run(ip, "SELECT 1").returncode != 0, None),
                        "a client outside allowed_cidrs refused", timeout=30)
        r = CLOUD.trove("a", "PUT", "/instances/" + iid,
                        {"instance": {"access": {"allowed_cidrs": ["10.0.0.0/8", "127.0.0.0/8"]}}})
        self.assertEqual(r.status, 202, r)
        self.eventually(lambda: (engine.run(ip, "SELECT 1").returncode == 0, None),
                        "a client inside allowed_cidrs let in", timeout=30)
        r = CLOUD.trove("a", "PUT", "/instances/" + iid,
                        {"instance": {"access": {"allowed_cidrs": ["10.0.0.0/33"]}}})
        self.assertEqual(r.status, 400, r)
        cli("database", "instance", "delete", iid)
        self.wait_gone("a", iid)
        self.eventually(lambda: (listener(ip, 5432) == "", listener(ip, 5432)),
                        "endpoint closed")

    def flavor_id(self, name="m1.tiny"):
        flavors = CLOUD.trove("a", "GET", "/flavors").json()["flavors"]
        return [f["id"] for f in flavors if f["name"] == name][0]

    def test_transaction_pooling_with_prepared_statements(self):
        r = CLOUD.trove("a", "POST", "/instances", {"instance": {
            "name": "pool-pg", "flavorRef": self.flavor_id(), "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"}, "pooling": "transaction",
            "databases": [{"name": "shop"}],
            "users": [{"name": "app", "password": "App-pw-1", "databases": [{"name": "shop"}]}]}})
        self.assertEqual(r.status, 200, r)
        iid = r.json()["instance"]["id"]
        self.addCleanup(self.delete_quietly, iid)
        ip = self.wait_status("a", iid)["ip"][0]
        env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": "App-pw-1", "PGSSLMODE": "require"}
        common = ["-h", ip, "-U", "app", "shop"]
        # pgbench's tables belong to app (shop's owner privileges come with the grant).
        p = subprocess.run([PGBENCH, "-i", "-s", "1", "-q"] + common, env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([PGBENCH, "-M", "prepared", "-c", "8", "-j", "2", "-t", "50"] + common,
                           env=env, capture_output=True, text=True, timeout=180)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("number of failed transactions: 0", p.stdout)

        # The pool is sized from the flavor (m1.tiny: 1 vCPU, so the floor of 8) until the
        # tenant sets it; the endpoint then closes the server connections beyond the new size.
        def pool():
            return CLOUD.trove("a", "GET", "/instances/" + iid).json()["instance"]["pooling"]
        self.assertEqual(pool(), {"mode": "transaction", "pool_size": 8})

        def app_backends():
            r = psql(ip, "app", "App-pw-1", "shop",
                     "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
            return int(r.stdout.strip()) if r.returncode == 0 else -1
        self.assertGreater(app_backends(), 2)  # pgbench's 8 clients left more than 2 open
        r = CLOUD.trove("a", "PUT", "/instances/" + iid, {"instance": {"pooling": {"pool_size": 2}}})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(pool(), {"mode": "transaction", "pool_size": 2})
        self.eventually(lambda: (0 < app_backends() <= 2, app_backends()), "pool shrunk to 2")
        p = subprocess.run([PGBENCH, "-M", "prepared", "-c", "4", "-j", "2", "-t", "20"] + common,
                           env=env, capture_output=True, text=True, timeout=180)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertLessEqual(app_backends(), 2)
        r = CLOUD.trove("a", "PUT", "/instances/" + iid,
                        {"instance": {"pooling": {"pool_size": None}}})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(pool(), {"mode": "transaction", "pool_size": 8})
        for bad in ({"pool_size": 0}, {"pool_size": "big"}, {"mode": "session"}, {"size": 3}):
            r = CLOUD.trove("a", "PUT", "/instances/" + iid, {"instance": {"pooling": bad}})
            self.assertEqual(r.status, 400, (bad, r))
            self.assertIn("badRequest", r.json())
        self.assertEqual(pool(), {"mode": "transaction", "pool_size": 8})

        # Bad pooling values and pooling of MariaDB are refused, nothing created.
        for bad in ({"pooling": "statement", "datastore": {"type": "postgresql"}},
                    {"pooling": {"mode": "transaction", "pool_size": 1001},
                     "datastore": {"type": "postgresql"}},
                    {"pooling": {"mode": "session", "pool_size": 4},
                     "datastore": {"type": "postgresql"}},
                    {"pooling": "transaction", "datastore": {"type": "mariadb"}}):
            body = {"name": "bad-pool", "flavorRef": self.flavor_id(), "volume": {"size": 1}}
            body.update(bad)
            r = CLOUD.trove("a", "POST", "/instances", {"instance": body})
            self.assertEqual(r.status, 400, r)
            self.assertIn("badRequest", r.json())

    def replica_flow(self, engine):
        prefix = engine.datastore[:2]
        primary = self.create(prefix + "-primary", engine)
        p_ip = self.wait_status("a", primary)["ip"][0]
        self.assertEqual(engine.run(p_ip, engine.make_table).returncode, 0)

        replica = cli("database", "instance", "create", prefix + "-replica", "--replica-of",
                      primary, "-f", "json")["id"]
        self.addCleanup(self.delete_quietly, replica)
        r_inst = self.wait_status("a", replica)
        r_ip = r_inst["ip"][0]
        self.assertNotEqual(r_ip, p_ip)
        self.assertEqual(r_inst["replica_of"]["id"], primary)
        self.assertEqual(r_inst["datastore"]["type"], engine.datastore)
        shown = CLOUD.trove("a", "GET", "/instances/" + primary).json()["instance"]
        self.assertEqual([x["id"] for x in shown["replicas"]], [replica])
        if engine is MariadbSql:
            self.seeded_by_a_backup_taken_for_it(primary, replica)

        # The existing rows, then a later one, reach the replica; it refuses writes.
        self.eventually(lambda: (self.rows(engine, r_ip) == [1], self.rows(engine, r_ip)),
                        "first row on the replica")
        self.assertEqual(engine.run(p_ip, "INSERT INTO items VALUES (2)").returncode, 0)
        self.eventually(lambda: (self.rows(engine, r_ip) == [1, 2], self.rows(engine, r_ip)),
                        "second row on the replica")
        p = engine.run(r_ip, "INSERT INTO items VALUES (3)")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(engine.read_only_error, p.stderr)
        extra = self.broken_replica_is_rebuilt(primary, p_ip, replica, r_ip) \
            if engine is MariadbSql else []
        # A database made through the API on the primary appears on the replica.
        cli("database", "db", "create", primary, "extra")
        # (MariaDB shows the app user only the databases it has grants on.)
        cli("database", "user", "grant", "access", primary, "app", "extra")
        self.eventually(lambda: ("extra" in engine.databases(r_ip), engine.databases(r_ip)),
                        "new database on the replica", timeout=60)
        # The replica's lists are the primary's, and cannot be changed there.
        listed = CLOUD.trove("a", "GET", "/instances/%s/databases" % replica).json()
        self.assertIn("extra", [d["name"] for d in listed["databases"]])
        r = CLOUD.trove("a", "POST", "/instances/%s/databases" % replica,
                        {"databases": [{"name": "nope"}]})
        self.assertEqual(r.status, 400, r)
        # A primary with replicas is not deleted; another tenant sees neither.
        r = CLOUD.trove("a", "DELETE", "/instances/" + primary)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(CLOUD.trove("b", "GET", "/instances/" + replica).status, 404)
        r = CLOUD.trove("b", "POST", "/instances", {"instance": {
            "name": "steal", "replica_of": primary}})
        self.assertEqual(r.status, 404, r)

        # Promote: the replica takes writes, the old primary follows it.
        cli("database", "instance", "promote", replica)
        self.wait_status("a", replica)
        shown = self.eventually(
            lambda: (lambda i: (i.get("replica_of", {}).get("id") == replica, i))(
                CLOUD.trove("a", "GET", "/instances/" + primary).json()["instance"]),
            "old primary follows the promoted replica")
        self.wait_status("a", primary)
        self.assertNotIn("replica_of",
                         CLOUD.trove("a", "GET", "/instances/" + replica).json()["instance"])
        self.eventually(lambda: (engine.run(r_ip, "INSERT INTO items VALUES (4)").returncode == 0,
                                 engine.run(r_ip, "SELECT 1").stderr),
                        "writes on the promoted replica", timeout=60)
        self.eventually(lambda: (self.rows(engine, p_ip) == sorted([1, 2, 4] + extra),
                                 self.rows(engine, p_ip)),
                        "the old primary follows the new one")
        p = engine.run(p_ip, "INSERT INTO items VALUES (5)")
        self.assertNotEqual(p.returncode, 0)

        # Detach: the old primary is standalone and writable, and no longer follows.
        cli("database", "instance", "detach", primary)
        self.eventually(
            lambda: (lambda i: ("replica_of" not in i, i))(
                CLOUD.trove("a", "GET", "/instances/" + primary).json()["instance"]),
            "detached")
        self.wait_status("a", primary)
        again = cli("database", "instance", "detach", primary, check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("is not a replica", again.stderr)  # Trove's 400
        self.assertNotIn("replicas",
                         CLOUD.trove("a", "GET", "/instances/" + replica).json()["instance"])
        self.eventually(lambda: (engine.run(p_ip, "INSERT INTO items VALUES (6)").returncode == 0,
                                 engine.run(p_ip, "SELECT 1").stderr),
                        "writes on the detached instance", timeout=60)
        self.assertEqual(engine.run(r_ip, "INSERT INTO items VALUES (7)").returncode, 0)
        self.assertEqual(self.rows(engine, p_ip), sorted([1, 2, 4, 6] + extra))
        self.assertEqual(self.rows(engine, r_ip), sorted([1, 2, 4, 7] + extra))

    def seeded_by_a_backup_taken_for_it(self, primary, replica):
        """Without a backup of the primary, one was taken to seed the replica (as Trove's
        replication snapshot), and the replica's copy was made from it."""
        backups = cli("database", "backup", "list", "-i", primary, "-f", "json")
        self.assertEqual(len(backups), 1, backups)
        self.assertEqual(backups[0]["Name"], "Replication snapshot for ma-primary", backups)
        self.assertEqual(backups[0]["Status"], "COMPLETED", backups)
        # How the copy was made, as the engine records it in the instance's folder.
        records = database_fixture.replica_copy_records(replica)
        self.assertEqual(len(records), 1, records)
        self.assertTrue(records[0].startswith("backup %s 0-" % backups[0]["ID"]), records)

    def broken_replica_is_rebuilt(self, primary, p_ip, replica, r_ip):
        """Row 11 is written on the replica (by the engine's administrator: the tenant's root
        has no READ ONLY ADMIN, it is refused), the primary writes 11 and 12: the replica's
        replay stops at 11 and only a new copy gets it 12. Returns the rows added."""
        root = cli("database", "root", "enable", primary, "-f", "json")
        on_replica = lambda sql: mariadb(r_ip, "root", root["password"], "shop", sql)  # noqa
        self.eventually(lambda: (lambda q: ("ERROR 1290" in q.stderr, q.stderr))(
            on_replica("INSERT INTO items VALUES (11)")), "root refused on the replica")
        q = database_fixture.mariadb_local_admin(replica, "INSERT INTO shop.items VALUES (11)")
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertEqual(MariadbSql.run(p_ip, "INSERT INTO items VALUES (11)").returncode, 0)
        self.assertEqual(MariadbSql.run(p_ip, "INSERT INTO items VALUES (12)").returncode, 0)
        self.eventually(lambda: (self.rows(MariadbSql, r_ip) == [1, 2, 11, 12],
                                 self.rows(MariadbSql, r_ip)),
                        "the replica made anew past the conflict", timeout=120)
        self.wait_status("a", replica)

        def events():
            r = CLOUD.trove("a", "GET", "/instances/%s/events" % replica).json()
            return [e["type"] for e in r["events"]]
        self.eventually(lambda: (lambda t: ("replica.rebuilding" in t and "replica.rebuilt" in t,
                                            t))(events()),
                        "the rebuild in the events feed", timeout=60)
        return [11, 12]

    def test_postgresql_replica_promote_detach(self):
        self.replica_flow(PostgresSql)

    def test_mariadb_replica_promote_detach(self):
        self.replica_flow(MariadbSql)


if __name__ == "__main__":
    unittest.main()
