"""Managed databases end to end on the real binary (issue 4, stage 1).

Starts `concord all-in-one` with its in-process agent running the database driver, so every
Trove instance is a real PostgreSQL 15 or MariaDB 10.11 engine run as the concord-db user on its
own loopback address. A tenant drives it with the real `openstack database ...` CLI
(python3-troveclient) and connects with the real `psql` / `mariadb` clients over TCP:

* create a PostgreSQL and a MariaDB instance with an initial database and user, wait ACTIVE,
  connect as that user to the reported ip and run queries;
* create another database and user through the CLI and connect as that user; enable root and
  connect as root; delete a user and see its login refused;
* another tenant gets 404 for the instance and cannot add a user to it (so no login of its
  works there);
* bad input rows (unknown datastore, volume 0 or too big, injection names) get 4xx in Trove's
  error format;
* delete: the instance answers 404 and the engine's processes and folder are gone.

Needs root (engines run as another user) and the Debian packages of scripts/install-deps.sh
(postgresql-15, mariadb-server, python3-troveclient); skips with the reason otherwise.
"""
import glob
import os
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import database_fixture  # noqa: E402
from database_fixture import last_line, mariadb, psql  # noqa: E402

ACTIVE_TIMEOUT = 180.0
CHANGE_TIMEOUT = 90.0

CLOUD = None
SRV = None
FIX = {}


def setUpModule():
    global CLOUD, SRV, FIX
    # A pool of its own: see database_fixture.Cloud.
    CLOUD = database_fixture.Cloud("db", "127.78.1.0/24")
    DatabaseInstancesTest.cloud = CLOUD
    SRV, FIX = CLOUD.srv, CLOUD.fix


def cli(who, *args, check=True):
    return CLOUD.cli(who, *args, check=check)


def trove(who, method, path, body=None):
    return CLOUD.trove(who, method, path, body)







def engine_pids(instance_id):
    """Pids of processes whose command line names the instance's folder."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if instance_id in cmd and "python" not in cmd:
            out.append(int(pid))
    return out


def instance_dirs(instance_id):
    """The engine folders of an instance: the database driver keeps them under
    /var/lib/concord/database/<digest of the agent's state dir>/<id> (database_driver.cc)."""
    return glob.glob(os.path.join("/var/lib/concord/database", "*", instance_id))


class DatabaseInstancesTest(database_fixture.InstanceWaits, unittest.TestCase):
    active_timeout = ACTIVE_TIMEOUT
    change_timeout = CHANGE_TIMEOUT

    def delete_and_check_gone(self, iid):
        self.assertEqual(len(instance_dirs(iid)), 1, instance_dirs(iid))
        cli("a", "database", "instance", "delete", iid)
        deadline = time.monotonic() + CHANGE_TIMEOUT
        while time.monotonic() < deadline:
            r = trove("a", "GET", "/instances/" + iid)
            if r.status == 404:
                break
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["instance"]["status"], "SHUTDOWN", r)
            time.sleep(0.5)
        r = trove("a", "GET", "/instances/" + iid)
        self.assertEqual(r.status, 404, r)
        self.assertIn("itemNotFound", r.json())
        self.eventually(lambda: (not engine_pids(iid), engine_pids(iid)), "engine processes gone",
                        timeout=30)
        self.assertEqual(instance_dirs(iid), [])

    def create(self, name, datastore, version, extra=()):
        inst = cli("a", "database", "instance", "create", name, "--flavor", "m1.tiny",
                   "--size", "1", "--datastore", datastore, "--datastore-version", version,
                   "--databases", "shop", "--users", "app:App-pw-1", *extra, "-f", "json")
        self.assertEqual(inst["status"], "BUILD", inst)
        self.assertEqual(inst["datastore"], datastore, inst)
        return inst["id"]

    def test_postgresql_instance_lifecycle(self):
        iid = self.create("pg-it", "postgresql", "15")
        inst = self.wait_status("a", iid)
        ip = inst["ip"][0]
        self.assertTrue(ip.startswith("127.78.1."), inst)
        self.assertEqual(inst["port"], 5432)
        self.assertEqual(inst["addresses"], [{"address": ip, "type": "private"}])

        # The initial user works over TCP at the reported address.
        p = psql(ip, "app", "App-pw-1", "shop",
                 "CREATE TABLE items (id int PRIMARY KEY, name text); "
                 "INSERT INTO items VALUES (1, 'one'), (2, 'two'); SELECT count(*) FROM items")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(last_line(p), "2")
        self.assertNotEqual(psql(ip, "app", "wrong-pw", "shop", "SELECT 1").returncode, 0)

        # Trove's guest logs: the server log, published by the instance's agent, says why that
        # login failed; Concord's GET .../log/<name> returns it (troveclient's `log tail` needs
        # Swift).
        logs = cli("a", "database", "log", "list", iid, "-f", "json")
        self.assertEqual([(g["Name"], g["Type"], g["Status"]) for g in logs],
                         [("general", "USER", "Ready")], logs)
        shown = cli("a", "database", "log", "set", iid, "general", "--publish", "-f", "json")
        self.assertIn(shown["status"], ("Published", "Partial"), shown)
        self.assertGreater(shown["published"], 0, shown)
        r = trove("a", "GET", "/instances/%s/log/general" % iid)
        self.assertEqual(r.status, 200, r)
        self.assertIn('password authentication failed for user "app"', r.body.decode())
        last = trove("a", "GET", "/instances/%s/log/general?lines=1" % iid).body.decode()
        self.assertEqual(len(last.splitlines()), 1, last)
        self.assertEqual(cli("a", "database", "log", "show", iid, "general", "-f", "json")[
            "published"], shown["published"])
        p = cli("a", "database", "log", "set", iid, "general", "--enable", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("always on", p.stderr)
        self.assertEqual(trove("b", "GET", "/instances/%s/log/general" % iid).status, 404)

        listed = cli("a", "database", "instance", "list", "-f", "json")
        self.assertIn(iid, [i["ID"] for i in listed])
        self.assertEqual(len(cli("a", "database", "instance", "list", "--limit", "1",
                                 "-f", "json")), 1)
        # The operator's view of every project (GET /mgmt/instances): tenant and server shown;
        # tenant b's list does not have it.
        every = {i["ID"]: i for i in cli("admin", "database", "instance", "list",
                                         "--all-projects", "-f", "json")}
        self.assertIn(iid, every)
        self.assertEqual(every[iid]["Tenant ID"], FIX["a"]["project_id"], every[iid])
        self.assertEqual(every[iid]["Server ID"], iid, every[iid])
        self.assertEqual(every[iid]["Status"], "ACTIVE", every[iid])
        mine = cli("admin", "database", "instance", "list", "--project-id",
                   FIX["b"]["project_id"], "-f", "json")
        self.assertNotIn(iid, [i["ID"] for i in mine])
        self.assertNotIn(iid, [i["ID"] for i in cli("b", "database", "instance", "list",
                                                     "-f", "json")])

        # Another database and user through the CLI; changes are asynchronous, as in Trove.
        cli("a", "database", "db", "create", iid, "orders")
        cli("a", "database", "user", "create", iid, "bob", "Bob-pw-2", "--databases", "orders")
        dbs = [d["Name"] for d in cli("a", "database", "db", "list", iid, "-f", "json")]
        self.assertEqual(sorted(dbs), ["orders", "shop"])
        users = {u["Name"]: u for u in cli("a", "database", "user", "list", iid, "-f", "json")}
        self.assertIn("bob", users)
        self.eventually(lambda: (lambda q: (q.returncode == 0 and last_line(q) == "7", q))(
            psql(ip, "bob", "Bob-pw-2", "orders",
                 "CREATE TABLE t (x int); INSERT INTO t VALUES (7); SELECT x FROM t")),
            "bob logs in to orders")

        # Root.
        root = cli("a", "database", "root", "enable", iid, "-f", "json")
        self.assertEqual(root["name"], "root")
        shown = cli("a", "database", "root", "show", iid, "-f", "json")
        self.assertTrue(shown["is_root_enabled"], shown)
        self.eventually(lambda: (lambda q: (q.returncode == 0 and q.stdout.strip() == "t", q))(
            psql(ip, "root", root["password"], "postgres",
                 "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")),
            "root logs in as a superuser")

        # A deleted user can no longer log in.
        cli("a", "database", "user", "delete", iid, "bob")
        self.eventually(lambda: (lambda q: (q.returncode != 0, q))(
            psql(ip, "bob", "Bob-pw-2", "orders", "SELECT 1")), "bob's login refused")

        # Restart and a bigger volume: the data stays, the address stays.
        cli("a", "database", "instance", "restart", iid)
        self.wait_status("a", iid, timeout=CHANGE_TIMEOUT)
        cli("a", "database", "instance", "resize", "volume", iid, "2")
        inst = self.wait_status("a", iid, timeout=CHANGE_TIMEOUT)
        self.assertEqual(inst["volume"]["size"], 2, inst)
        self.assertEqual(inst["ip"][0], ip)
        self.eventually(lambda: (lambda q: (q.returncode == 0 and last_line(q) == "2", q))(
            psql(ip, "app", "App-pw-1", "shop", "SELECT count(*) FROM items")),
            "the data survives the restart")

        # Another tenant: the instance does not exist for it, and it cannot add a user to it.
        r = trove("b", "GET", "/instances/" + iid)
        self.assertEqual(r.status, 404, r)
        self.assertIn("itemNotFound", r.json())
        r = trove("b", "POST", "/instances/%s/users" % iid,
                  {"users": [{"name": "intruder", "password": "Intr-pw-1",
                              "databases": [{"name": "shop"}]}]})
        self.assertEqual(r.status, 404, r)
        p = cli("b", "database", "instance", "show", iid, check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        time.sleep(1)
        self.assertNotEqual(psql(ip, "intruder", "Intr-pw-1", "shop", "SELECT 1").returncode, 0)
        r = SRV.request("GET", "/database/v1.0/%s/instances/%s" % (FIX["a"]["project_id"], iid),
                        token=FIX["b"]["token"])
        self.assertEqual(r.status, 403, r)

        self.delete_and_check_gone(iid)

    def test_mariadb_instance_lifecycle(self):
        iid = self.create("maria-it", "mariadb", "10.11")
        inst = self.wait_status("a", iid)
        ip = inst["ip"][0]
        self.assertEqual(inst["port"], 3306)
        m = mariadb(ip, "app", "App-pw-1", "shop",
                    "CREATE TABLE items (id INT PRIMARY KEY); INSERT INTO items VALUES (1), (2);"
                    " SELECT COUNT(*) FROM items")
        self.assertEqual(m.returncode, 0, m.stderr)
        self.assertEqual(m.stdout.strip(), "2")

        # Guest logs: the error log is always there; the general log follows general_log in a
        # configuration group and is written where the engine's my.cnf says.
        logs = {g["Name"]: g["Status"]
                for g in cli("a", "database", "log", "list", iid, "-f", "json")}
        self.assertEqual(logs, {"error": "Ready", "general": "Disabled",
                                "slow_query": "Disabled"})
        cli("a", "database", "log", "set", iid, "error", "--publish")
        r = trove("a", "GET", "/instances/%s/log/error" % iid)
        self.assertEqual(r.status, 200, r)
        self.assertIn("ready for connections", r.body.decode())
        group = cli("a", "database", "configuration", "create", "maria-logs",
                    '{"general_log": 1}', "--datastore", "mariadb", "--datastore-version",
                    "10.11", "-f", "json")
        cli("a", "database", "configuration", "attach", iid, group["id"])
        self.eventually(lambda: (lambda s: (s == "Ready", s))(
            cli("a", "database", "log", "show", iid, "general", "-f", "json")["status"]),
            "the general log on")
        self.eventually(lambda: (lambda m: (m.returncode == 0, m))(
            mariadb(ip, "app", "App-pw-1", "shop", "SELECT 'guest-log-marker'")),
            "a query to log")
        shown = cli("a", "database", "log", "set", iid, "general", "--publish", "-f", "json")
        self.assertGreater(shown["published"], 0, shown)
        r = trove("a", "GET", "/instances/%s/log/general" % iid)
        self.assertIn("guest-log-marker", r.body.decode())
        cli("a", "database", "configuration", "detach", iid)
        cli("a", "database", "configuration", "delete", group["id"])

        cli("a", "database", "db", "create", iid, "orders")
        cli("a", "database", "user", "create", iid, "bob", "Bob-pw-2", "--databases", "orders")
        self.eventually(lambda: (lambda q: (q.returncode == 0 and q.stdout.strip() == "7", q))(
            mariadb(ip, "bob", "Bob-pw-2", "orders",
                    "CREATE TABLE t (x INT); INSERT INTO t VALUES (7); SELECT x FROM t")),
            "bob logs in to orders")
        # bob has no access to shop.
        self.assertNotEqual(
            mariadb(ip, "bob", "Bob-pw-2", "shop", "SELECT COUNT(*) FROM items").returncode, 0)

        root = cli("a", "database", "root", "enable", iid, "-f", "json")
        self.eventually(lambda: (lambda q: (q.returncode == 0, q))(
            mariadb(ip, "root", root["password"], None, "SELECT 1")), "root logs in")

        cli("a", "database", "user", "delete", iid, "bob")
        self.eventually(lambda: (lambda q: (q.returncode != 0, q))(
            mariadb(ip, "bob", "Bob-pw-2", "orders", "SELECT 1")), "bob's login refused")

        # An account limited to a host (troveclient's --host): the engine sees the client's own
        # address through the endpoint (its PROXY header), not the endpoint's.
        cli("a", "database", "user", "create", iid, "near", "Near-pw-3", "--databases", "shop",
            "--host", "127.0.0.5")
        self.assertEqual(
            cli("a", "database", "user", "show", iid, "near", "--host", "127.0.0.5", "-f",
                "json")["host"], "127.0.0.5")

        def login_from(source):
            import pymysql  # Debian's python3-pymysql: the mariadb client cannot bind a source
            try:
                c = pymysql.connect(host=ip, user="near", password="Near-pw-3", database="shop",
                                    bind_address=source, ssl={"check_hostname": False},
                                    connect_timeout=10)
            except pymysql.MySQLError as e:
                return str(e)
            try:
                cur = c.cursor()
                cur.execute("SELECT USER()")
                return cur.fetchone()[0]
            finally:
                c.close()
        self.eventually(lambda: (lambda u: (u == "near@127.0.0.5", u))(login_from("127.0.0.5")),
                        "near logs in from its host")
        refused = login_from("127.0.0.1")
        self.assertIn("Access denied for user 'near'@'127.0.0.1'", refused)

        r = trove("b", "GET", "/instances/" + iid)
        self.assertEqual(r.status, 404, r)
        self.delete_and_check_gone(iid)

    def test_quotas_through_the_cli(self):
        """troveclient's `quota show` and `quota update` (Trove's /mgmt/quotas) and `limit list`:
        an admin sets tenant b's instances to 0, b's create is refused with Trove's 413 and
        nothing is made; b sees its own limit, a cannot see b's."""
        b_project = FIX["b"]["project_id"]
        own = {q["Resource"]: q for q in cli("b", "database", "quota", "show", b_project,
                                              "-f", "json")}
        self.assertEqual(own["instances"]["Limit"], 10, own)
        self.assertNotEqual(
            cli("a", "database", "quota", "show", b_project, check=False).returncode, 0)
        limits = cli("b", "database", "limit", "list")
        self.assertIn("max_instances", limits.stdout, limits.stdout)
        try:
            self.assertEqual(cli("admin", "database", "quota", "update", b_project,
                                 "instances", "0", "-f", "json"), {"instances": 0})
            before = trove("b", "GET", "/instances").json()["instances"]
            refused = cli("b", "database", "instance", "create", "over-quota", "--flavor",
                          "m1.tiny", "--size", "1", "--datastore", "postgresql",
                          "--datastore-version", "15", check=False)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("Quota exceeded for resources: ['instances']", refused.stderr)
            self.assertEqual(trove("b", "GET", "/instances").json()["instances"], before)
        finally:
            cli("admin", "database", "quota", "update", b_project, "instances", "10")

    def test_admin_offers_an_engine_under_a_datastore_of_its_own(self):
        """The real CLI's management calls: an admin adds datastore "mysql-compat" on the
        MariaDB driver, a tenant runs an instance of it, the admin disables, removes the
        version and the datastore."""
        ds = "mysql-compat-%s" % uuid.uuid4().hex[:6]
        refused = cli("a", "datastore", "version", "create", "10.11", ds, "mariadb", "",
                      "--active", check=False)
        self.assertNotEqual(refused.returncode, 0, "a tenant added a datastore version")
        bad = cli("admin", "datastore", "version", "create", "10.11", ds, "oracle", "",
                  "--active", check=False)
        self.assertNotEqual(bad.returncode, 0, bad.stdout)
        self.assertIn("engine driver", bad.stderr)
        self.assertEqual(trove("a", "GET", "/datastores/" + ds).status, 404,
                         "a refused create left a datastore behind")
        cli("admin", "datastore", "version", "create", "10.11", ds, "mariadb", "",
            "--active", "--default", "--version-number", "10.11")
        versions = cli("a", "datastore", "version", "list", ds, "-f", "json")
        self.assertEqual([v["Name"] for v in versions], ["10.11"], versions)
        vid = versions[0]["ID"]

        iid = self.create("compat-it", ds, "10.11")
        inst = self.wait_status("a", iid)
        self.assertEqual(inst["port"], 3306, inst)
        m = mariadb(inst["ip"][0], "app", "App-pw-1", "shop", "SELECT VERSION()")
        self.assertEqual(m.returncode, 0, m.stderr)
        self.assertIn("MariaDB", m.stdout)

        # In use: the admin can disable it (tenants no longer see it) but not delete it.
        cli("admin", "datastore", "version", "set", vid, "--disable")
        self.assertEqual(cli("a", "datastore", "version", "list", ds, "-f", "json"), [])
        gone = cli("admin", "datastore", "version", "delete", vid, check=False)
        self.assertNotEqual(gone.returncode, 0, "an in-use version was deleted")
        self.delete_and_check_gone(iid)
        cli("admin", "datastore", "version", "delete", vid)
        cli("admin", "datastore", "delete", ds)
        self.assertEqual(trove("a", "GET", "/datastores/" + ds).status, 404)

    def test_bad_input_gets_troves_errors(self):
        base = {"name": "bad", "flavorRef": "1", "volume": {"size": 1},
                "datastore": {"type": "postgresql", "version": "15"},
                "databases": [{"name": "shop"}],
                "users": [{"name": "app", "password": "App-pw-1",
                           "databases": [{"name": "shop"}]}]}
        cases = [
            ("unknown datastore", {"datastore": {"type": "mysql"}}, 404, "itemNotFound"),
            ("unknown version", {"datastore": {"type": "postgresql", "version": "9.6"}}, 404,
             "itemNotFound"),
            ("unknown flavor", {"flavorRef": "no-such-flavor"}, 404, "itemNotFound"),
            ("volume 0", {"volume": {"size": 0}}, 400, "badRequest"),
            ("volume too big", {"volume": {"size": 11}}, 400, "badRequest"),
            ("injection in a database name",
             {"databases": [{"name": "x'; DROP DATABASE postgres; --"}]}, 400, "badRequest"),
            ("injection in a user name",
             {"users": [{"name": "a\"b", "password": "pw"}]}, 400, "badRequest"),
            ("reserved name", {"databases": [{"name": "template1"}]}, 400, "badRequest"),
        ]
        for what, change, status, key in cases:
            body = dict(base)
            body.update(change)
            r = trove("a", "POST", "/instances", {"instance": body})
            self.assertEqual(r.status, status, "%s: %r" % (what, r))
            self.assertEqual(r.json()[key]["code"], status, what)
        r = trove("a", "POST", "/instances", "{not json")
        self.assertEqual(r.status, 400, r)
        # The CLI shows the error and exits non-zero.
        p = cli("a", "database", "instance", "create", "bad", "--flavor", "m1.tiny", "--size",
                "1", "--datastore", "mysql", "--datastore-version", "8", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("mysql", p.stderr)
        # Nothing was created.
        r = trove("a", "GET", "/instances")
        self.assertEqual([i["name"] for i in r.json()["instances"] if i["name"] == "bad"], [])


if __name__ == "__main__":
    unittest.main()
