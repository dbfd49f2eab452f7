"""The managed-database end-to-end tests' shared set-up (test_database_*.py).

One real `concord all-in-one` per test module with its in-process agent running the database
driver, two member tenants "a" and "b", and the real clients a tenant uses: the `openstack`
CLI (python3-troveclient), `psql` and `mariadb`.
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid

import concord_launcher

OPENSTACK = "/usr/bin/openstack"


def skip_reason():
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: the agent runs database engines as the concord-db user"
    for tool in (OPENSTACK, "/usr/bin/psql", "/usr/bin/mariadb",
                 "/usr/lib/postgresql/15/bin/postgres", "/usr/sbin/mariadbd"):
        if not os.path.exists(tool):
            return tool + " is missing (scripts/install-deps.sh --test installs it)"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import troveclient"],
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        return "python3-troveclient is not installed (scripts/install-deps.sh --test)"
    probe = subprocess.run(["id", "concord-db"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return "the concord-db system user is missing (scripts/install-deps.sh creates it)"
    return None


class Cloud:
    """A started server with tenants "a" and "b" (each a member of its own project).

    Call from setUpModule: it skips the module when skip_reason() says so and registers every
    cleanup with unittest.addModuleCleanup. `address_pool` must be the module's own /24, so
    test modules running at the same time (and Tempest's database profile, or a developer's
    all-in-one on 127.77.0.0/16) never collide on an engine's :5432 / :3306.
    """

    def __init__(self, name, address_pool):
        reason = skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        self.home = tempfile.mkdtemp(prefix="concord-%s-it-" % name)  # the CLI's caches
        unittest.addModuleCleanup(shutil.rmtree, self.home, True)
        self.srv = concord_launcher.start_server(
            unittest.addModuleCleanup,
            extra_args=["--agent.drivers=database", "--database.max_volume_gb=10",
                        "--database.address_pool=" + address_pool])
        self.fix = {}
        admin = self.srv.admin_token()
        sfx = uuid.uuid4().hex[:8]
        v3 = self.srv.v3
        roles = self.srv.request("GET", v3 + "/roles?name=member", token=admin).json()["roles"]
        for who in ("a", "b"):
            project = "%s-%s-%s" % (name, who, sfx)
            user = "%s-u%s-%s" % (name, who, sfx)
            p = self.srv.request("POST", v3 + "/projects",
                                 {"project": {"name": project, "domain_id": "default"}},
                                 token=admin).json()["project"]
            u = self.srv.request("POST", v3 + "/users",
                                 {"user": {"name": user, "domain_id": "default",
                                           "password": "pw-" + sfx}}, token=admin).json()["user"]
            r = self.srv.request("PUT", "%s/projects/%s/users/%s/roles/%s" % (
                v3, p["id"], u["id"], roles[0]["id"]), token=admin)
            assert r.status == 204, r
            self.fix[who] = {"project": project, "project_id": p["id"], "user": user,
                             "password": "pw-" + sfx,
                             "token": self.srv.issue_token(user, "pw-" + sfx, project)[0]}

        # The cloud's admin, for the management calls (datastore versions).
        admin_project = self.srv.request("GET", v3 + "/projects?name=admin",
                                         token=admin).json()["projects"][0]
        self.fix["admin"] = {"project": "admin", "project_id": admin_project["id"],
                             "user": "admin", "password": self.srv.admin_password,
                             "token": admin}

    def cli(self, who, *args, check=True):
        """`openstack <args>` as tenant `who`; the parsed JSON output when -f json is among
        args, else the completed process."""
        f = self.fix[who]
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "OS_AUTH_URL": self.srv.auth_url,
               "OS_USERNAME": f["user"], "OS_PASSWORD": f["password"],
               "OS_PROJECT_NAME": f["project"], "OS_USER_DOMAIN_NAME": "Default",
               "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
               "OS_INTERFACE": "public", "OS_REGION_NAME": "RegionOne"}
        p = subprocess.run([OPENSTACK] + list(args), env=env, capture_output=True, text=True,
                           timeout=180)
        if check and p.returncode != 0:
            raise AssertionError("openstack %s failed (%d):\n%s\n%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        if "-f" in args and "json" in args and p.returncode == 0:
            return json.loads(p.stdout)
        return p

    def trove(self, who, method, path, body=None):
        """A Trove API call below /database/v1.0/<who's project>."""
        f = self.fix[who]
        return self.srv.request(method, "/database/v1.0/%s%s" % (f["project_id"], path), body,
                                token=f["token"])


def psql(ip, user, password, database, sql):
    env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run(["/usr/bin/psql", "-h", ip, "-U", user, "-d", database, "-X", "-A",
                           "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          env=env, capture_output=True, text=True, timeout=30)


def mariadb(ip, user, password, database, sql):
    cmd = ["/usr/bin/mariadb", "-h", ip, "-P", "3306", "--protocol=TCP", "-u", user,
           "--password=" + password, "--connect-timeout=5", "-N", "-B", "-e", sql]
    if database:
        cmd.insert(1, "--database=" + database)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def replica_copy_records(instance_id):
    """The texts of the replica's `replica_copy` records (how its copy was made: `backup <id>
    <gtid>` or `network <gtid>`), from its instance folder on this host (the all-in-one's
    agent runs here); one when the copy was made."""
    out = []
    for path in glob.glob("/var/lib/concord/database/*/%s/**/replica_copy" % instance_id,
                          recursive=True):
        with open(path, encoding="utf-8") as f:
            out.append(f.read())
    return out


def mariadb_local_admin(instance_id, sql):
    """`sql` run by the MariaDB engine's own administrator over the instance's socket, in its
    folder on this host (the all-in-one's agent runs here): what no tenant account can do, such
    as writing on a read-only replica."""
    socks = glob.glob("/var/lib/concord/database/*/%s/**/run/mysqld.sock" % instance_id,
                      recursive=True)
    if len(socks) != 1:
        raise AssertionError("socket of %s: %r" % (instance_id, socks))
    return subprocess.run(["mariadb", "-S", socks[0], "-u", "root", "-N", "-e", sql],
                          capture_output=True, text=True, timeout=30)


def last_line(p):
    """The last line of a client's output (psql prints each statement's tag before it)."""
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class InstanceWaits:
    """Polling helpers for the end-to-end test cases (a mixin for unittest.TestCase). The
    module sets `cloud` on the class: the database_fixture.Cloud it started."""

    cloud = None
    active_timeout = 240.0
    change_timeout = 120.0

    def wait_status(self, who, iid, want=("ACTIVE", "HEALTHY"), timeout=None):
        deadline = time.monotonic() + (timeout or self.active_timeout)
        last = None
        while time.monotonic() < deadline:
            last = self.cloud.trove(who, "GET", "/instances/" + iid)
            self.assertEqual(last.status, 200, last)
            inst = last.json()["instance"]
            if inst["status"] in want:
                return inst
            if inst["status"] == "ERROR":
                self.fail("instance went to ERROR: %r\n%s" % (last, self.cloud.srv.log_tail(80)))
            time.sleep(0.5)
        self.fail("instance not %s in time: %r\n%s" % (want, last, self.cloud.srv.log_tail(80)))

    def eventually(self, fn, what, timeout=None):
        deadline = time.monotonic() + (timeout or self.change_timeout)
        last = None
        while time.monotonic() < deadline:
            ok, last = fn()
            if ok:
                return last
            time.sleep(0.5)
        self.fail("%s: not in time; last: %r\n%s" % (what, last, self.cloud.srv.log_tail(60)))

    def wait_gone(self, who, iid):
        self.eventually(lambda: (self.cloud.trove(who, "GET", "/instances/" + iid).status == 404,
                                 iid), "instance %s deleted" % iid)
