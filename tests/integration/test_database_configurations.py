"""Configuration groups end to end on the real binary (issue 4, stage 2).

Starts `concord all-in-one` with its in-process agent running the database driver, and drives
it with the real `openstack database configuration ...` CLI (python3-troveclient) against real
PostgreSQL 15 and MariaDB 10.11 engines, checking each value with psql / mariadb over TCP:

* the parameter catalog lists the engine's settable parameters with their restart flag;
* a group with a dynamic value (work_mem) and a restart-required one (max_connections) is
  attached: the dynamic value is live without a restart, the instance shows RESTART_REQUIRED,
  `database instance restart` clears it and the restart-required value is then live;
* deleting an attached group is refused; detaching reverts the values (work_mem at once);
* a bad value is refused by the CLI naming the parameter; another tenant cannot see the group;
* a MariaDB instance created with a group (`--configuration`) runs with its values at once,
  restart-required ones included (a new instance is restarted once before it is ACTIVE).

Needs root and the Debian packages of scripts/install-deps.sh; skips with the reason otherwise.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import database_fixture  # noqa: E402
from database_fixture import mariadb, psql  # noqa: E402

ACTIVE_TIMEOUT = 180.0
CHANGE_TIMEOUT = 90.0

CLOUD = None
SRV = None
FIX = {}


def setUpModule():
    global CLOUD, SRV, FIX
    # A pool of its own: see database_fixture.Cloud.
    CLOUD = database_fixture.Cloud("dbcfg", "127.78.3.0/24")
    DatabaseConfigurationsTest.cloud = CLOUD
    SRV, FIX = CLOUD.srv, CLOUD.fix


def cli(who, *args, check=True):
    return CLOUD.cli(who, *args, check=check)


def trove(who, method, path, body=None):
    return CLOUD.trove(who, method, path, body)






class DatabaseConfigurationsTest(database_fixture.InstanceWaits, unittest.TestCase):
    active_timeout = ACTIVE_TIMEOUT
    change_timeout = CHANGE_TIMEOUT

    def pg_setting(self, ip, name):
        p = psql(ip, "app", "App-pw-1", "shop", "SHOW " + name)
        return p.returncode == 0 and p.stdout.strip(), p

    def delete_instance(self, iid):
        cli("a", "database", "instance", "delete", iid)
        self.eventually(lambda: (lambda r: (r.status == 404, r))(
            trove("a", "GET", "/instances/" + iid)), "instance gone")

    def test_postgresql_group_attach_restart_detach(self):
        params = cli("a", "database", "configuration", "parameter", "list", "15",
                     "--datastore", "postgresql", "-f", "json")
        by_name = {p["Name"]: p for p in params}
        self.assertIn("work_mem", by_name)
        self.assertEqual(by_name["max_connections"]["Restart Required"], True, by_name)
        self.assertEqual(by_name["work_mem"]["Restart Required"], False, by_name)
        shown = cli("a", "database", "configuration", "parameter", "show", "15", "work_mem",
                    "--datastore", "postgresql", "-f", "json")
        self.assertEqual(shown["type"], "integer", shown)

        # A bad value is refused naming the parameter; nothing is created.
        p = cli("a", "database", "configuration", "create", "bad", '{"work_mem": "lots"}',
                "--datastore", "postgresql", "--datastore-version", "15", check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("work_mem", p.stderr)

        group = cli("a", "database", "configuration", "create", "pg-tuned",
                    '{"work_mem": 8192, "max_connections": 150}', "--datastore", "postgresql",
                    "--datastore-version", "15", "--description", "e2e", "-f", "json")
        gid = group["id"]
        self.assertEqual(json.loads(group["values"]),
                         {"work_mem": 8192, "max_connections": 150}, group)
        listed = cli("a", "database", "configuration", "list", "-f", "json")
        self.assertIn(gid, [g["ID"] for g in listed])
        # Another tenant does not see it.
        self.assertNotEqual(cli("b", "database", "configuration", "show", gid,
                                check=False).returncode, 0)

        inst = cli("a", "database", "instance", "create", "pg-cfg", "--flavor", "m1.tiny",
                   "--size", "1", "--datastore", "postgresql", "--datastore-version", "15",
                   "--databases", "shop", "--users", "app:App-pw-1", "-f", "json")
        iid = inst["id"]
        ip = self.wait_status("a", iid)["ip"][0]
        self.assertEqual(self.pg_setting(ip, "work_mem")[0], "4MB")
        # The instance's default configuration (Concord's values for m1.tiny's 512 MB and the
        # 1 GB volume) is what its engine runs with.
        defaults = cli("a", "database", "configuration", "default", iid, "-f", "json")
        self.assertEqual({k: int(v) for k, v in defaults.items()},
                         {"max_connections": 100, "shared_buffers": 16384, "max_wal_size": 128,
                          "min_wal_size": 64}, defaults)
        for name, live in (("shared_buffers", "128MB"), ("max_wal_size", "128MB"),
                           ("min_wal_size", "64MB"), ("max_connections", "100")):
            self.assertEqual(self.pg_setting(ip, name)[0], live, name)

        cli("a", "database", "configuration", "attach", iid, gid)
        # The dynamic value is live without a restart ...
        self.eventually(lambda: (lambda s: (s[0] == "8MB", s))(self.pg_setting(ip, "work_mem")),
                        "work_mem is live")
        # ... the restart-required one waits, and the instance says so.
        inst = self.wait_status("a", iid, want=("RESTART_REQUIRED",), timeout=CHANGE_TIMEOUT)
        self.assertEqual(inst["configuration"]["id"], gid, inst)
        self.assertEqual(inst["configuration"]["name"], "pg-tuned", inst)
        self.assertEqual(self.pg_setting(ip, "max_connections")[0], "100")
        members = cli("a", "database", "configuration", "instances", gid, "-f", "json")
        self.assertEqual([m["ID"] for m in members], [iid])

        # An attached group cannot be deleted.
        p = cli("a", "database", "configuration", "delete", gid, check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)

        cli("a", "database", "instance", "restart", iid)
        self.wait_status("a", iid, timeout=CHANGE_TIMEOUT)
        self.eventually(lambda: (lambda s: (s[0] == "150", s))(
            self.pg_setting(ip, "max_connections")), "max_connections is live after restart")
        self.assertEqual(self.pg_setting(ip, "work_mem")[0], "8MB")

        # Detach: values revert (work_mem at once; max_connections waits for a restart).
        cli("a", "database", "configuration", "detach", iid)
        self.eventually(lambda: (lambda s: (s[0] == "4MB", s))(self.pg_setting(ip, "work_mem")),
                        "work_mem back to its default")
        inst = self.wait_status("a", iid, want=("RESTART_REQUIRED",), timeout=CHANGE_TIMEOUT)
        self.assertNotIn("configuration", inst)
        cli("a", "database", "configuration", "delete", gid)
        self.assertNotEqual(cli("a", "database", "configuration", "show", gid,
                                check=False).returncode, 0)
        self.delete_instance(iid)

    def test_mariadb_instance_created_with_a_group(self):
        group = cli("a", "database", "configuration", "create", "maria-tuned",
                    '{"wait_timeout": 600, "slow_query_log": true, '
                    '"innodb_log_file_size": 16777216}',
                    "--datastore", "mariadb", "-f", "json")
        gid = group["id"]
        inst = cli("a", "database", "instance", "create", "maria-cfg", "--flavor", "m1.tiny",
                   "--size", "1", "--datastore", "mariadb", "--datastore-version", "10.11",
                   "--databases", "shop", "--users", "app:App-pw-1", "--configuration", gid,
                   "-f", "json")
        iid = inst["id"]
        ip = self.wait_status("a", iid)["ip"][0]

        def setting(name):
            m = mariadb(ip, "app", "App-pw-1", None, "SELECT @@GLOBAL." + name)
            return m.returncode == 0 and m.stdout.strip(), m

        self.eventually(lambda: (lambda s: (s[0] == "600", s))(setting("wait_timeout")),
                        "wait_timeout is live")
        self.assertEqual(setting("slow_query_log")[0], "1")
        # Restart-required, yet live on a new instance: it was restarted once before ACTIVE.
        self.assertEqual(setting("innodb_log_file_size")[0], "16777216")
        self.assertEqual(trove("a", "GET", "/instances/" + iid).json()["instance"]["status"],
                         "ACTIVE")

        # Changing the group's dynamic values reaches the running instance.
        cli("a", "database", "configuration", "set", gid, '{"wait_timeout": 900}')
        self.eventually(lambda: (lambda s: (s[0] == "900", s))(setting("wait_timeout")),
                        "the group's new value is live")
        cli("a", "database", "configuration", "detach", iid)
        self.eventually(lambda: (lambda s: (s[0] == "28800", s))(setting("wait_timeout")),
                        "wait_timeout back to its default")
        self.delete_instance(iid)
        cli("a", "database", "configuration", "delete", gid)


if __name__ == "__main__":
    unittest.main()
