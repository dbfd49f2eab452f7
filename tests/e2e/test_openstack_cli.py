"""End-to-end: the real `openstack` CLI (python3-openstackclient 6.0) against `concord`.

Starts the binary (tests/integration/concord_launcher.py), then drives /usr/bin/openstack
with the clouds.yaml and openrc the binary generated, the way a newcomer would. Covers token
issue, project/user/role/application-credential administration, application-credential
authentication, catalog and endpoint listing, what a plain member may not do (403 from the
server, shown by the CLI as "Forbidden"/"HTTP 403"), and isolation between two projects.
Every CLI call has a timeout; the server is stopped in cleanup even when a step fails.
"""
import json
import os
import subprocess
import sys
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import concord_launcher  # noqa: E402

OPENSTACK = os.environ.get("OPENSTACK_CLI", "/usr/bin/openstack")
CLI_TIMEOUT = 120

SRV = None
S = {}  # state shared by the ordered steps


def setUpModule():
    global SRV
    SRV = concord_launcher.start_server(unittest.addModuleCleanup)
    S["sfx"] = uuid.uuid4().hex[:6]


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["HOME"] = SRV.tmp  # no stray ~/.config/openstack/clouds.yaml
    return env


def admin_env():
    env = clean_env()
    env["OS_CLIENT_CONFIG_FILE"] = os.path.join(SRV.data_dir, "clouds.yaml")
    env["OS_CLOUD"] = "concord-admin"
    return env


def openrc_env():
    env = clean_env()
    with open(os.path.join(SRV.data_dir, "openrc")) as f:
        env.update(concord_launcher.parse_openrc(f.read()))
    return env


def user_env(user, password, project):
    env = clean_env()
    env.update(OS_AUTH_URL=SRV.auth_url, OS_USERNAME=user, OS_PASSWORD=password,
               OS_PROJECT_NAME=project, OS_USER_DOMAIN_NAME="Default",
               OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3",
               OS_REGION_NAME="RegionOne", OS_INTERFACE="public")
    return env


def appcred_env(ac_id, secret):
    env = clean_env()
    env.update(OS_AUTH_TYPE="v3applicationcredential", OS_AUTH_URL=SRV.auth_url,
               OS_APPLICATION_CREDENTIAL_ID=ac_id, OS_APPLICATION_CREDENTIAL_SECRET=secret,
               OS_IDENTITY_API_VERSION="3", OS_REGION_NAME="RegionOne", OS_INTERFACE="public")
    return env


def osc(env, *args):
    """Runs the CLI; returns (exit code, stdout, stderr)."""
    p = subprocess.run([OPENSTACK] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class OpenStackCliTest(unittest.TestCase):
    maxDiff = None

    def ok(self, env, *args):
        code, out, err = osc(env, *args)
        self.assertEqual(code, 0, "openstack %s failed (%d):\n%s\n%s"
                         % (" ".join(args), code, err[-2000:], SRV.log_tail(15)))
        return out

    def js(self, env, *args):
        out = self.ok(env, *(list(args) + ["-f", "json"]))
        try:
            return json.loads(out)
        except ValueError:
            self.fail("openstack %s: not JSON: %r" % (" ".join(args), out[:500]))

    def forbidden(self, env, *args):
        code, out, err = osc(env, *args)
        self.assertNotEqual(code, 0, "openstack %s must fail, got:\n%s" % (" ".join(args), out))
        self.assertTrue("HTTP 403" in err or "Forbidden" in err,
                        "openstack %s: expected a 403 from the server, got:\n%s"
                        % (" ".join(args), err[-1500:]))
        return err

    def fails_not_found_or_forbidden(self, env, *args):
        code, out, err = osc(env, *args)
        self.assertNotEqual(code, 0, "openstack %s must fail, got:\n%s" % (" ".join(args), out))
        # OSC turns a 404 from the id lookup into "No applicationcredential with ... exists".
        markers = ("HTTP 403", "Forbidden", "HTTP 404", "No applicationcredential")
        self.assertTrue(any(s in err for s in markers),
                        "openstack %s: expected 403/404, got:\n%s" % (" ".join(args), err[-1500:]))

    # The steps depend on each other, so they run in order as one test.
    def test_cli_end_to_end(self):
        for step in ("admin_token_issue", "openrc_token_issue", "create_projects_and_users",
                     "role_assignments", "admin_listings", "member_app_credential",
                     "app_credential_token", "member_forbidden", "project_isolation",
                     "deletes"):
            # A failed step stops the run: later steps need the state it would have made.
            try:
                getattr(self, "step_" + step)()
            except AssertionError as e:
                raise AssertionError("step %s: %s" % (step, e)) from None

    def step_admin_token_issue(self):
        tok = self.js(admin_env(), "token", "issue")
        for key in ("id", "expires", "project_id", "user_id"):
            self.assertTrue(tok.get(key), "token issue lacks %s: %r" % (key, tok))
        S["admin_user_id"] = tok["user_id"]
        S["admin_project_id"] = tok["project_id"]

    def step_openrc_token_issue(self):
        tok = self.js(openrc_env(), "token", "issue")
        self.assertEqual(tok["user_id"], S["admin_user_id"])

    def step_create_projects_and_users(self):
        a = admin_env()
        sfx = S["sfx"]
        for n in (1, 2):
            p = self.js(a, "project", "create", "--domain", "default", "--description",
                        "e2e project %d" % n, "e2e-p%d-%s" % (n, sfx))
            self.assertEqual(p["name"], "e2e-p%d-%s" % (n, sfx))
            S["p%d" % n] = p["id"]
            S["p%d_name" % n] = p["name"]
            u = self.js(a, "user", "create", "--domain", "default", "--password",
                        "pw-%d-%s" % (n, sfx), "--project", p["name"], "--email",
                        "u%d@example.org" % n, "e2e-u%d-%s" % (n, sfx))
            self.assertEqual(u["default_project_id"], p["id"])
            S["u%d" % n] = u["id"]
            S["u%d_name" % n] = u["name"]
            S["u%d_pw" % n] = "pw-%d-%s" % (n, sfx)
            self.ok(a, "role", "add", "--project", p["name"], "--user", u["name"], "member")
        shown = self.js(a, "project", "show", S["p1"])
        self.assertEqual(shown["name"], S["p1_name"])
        self.assertEqual(shown["description"], "e2e project 1")

    def step_role_assignments(self):
        rows = self.js(admin_env(), "role", "assignment", "list", "--names")
        triples = {(r.get("Role"), r.get("User"), r.get("Project")) for r in rows}
        for n in (1, 2):
            want = ("member", S["u%d_name" % n] + "@Default", S["p%d_name" % n] + "@Default")
            self.assertIn(want, triples, "role assignment list --names: %r" % rows)
        self.assertIn(("admin", "admin@Default", "admin@Default"), triples)
        rows = self.js(admin_env(), "role", "assignment", "list", "--project", S["p1"])
        self.assertEqual({r["User"] for r in rows}, {S["u1"]},
                         "assignments on p1: %r" % rows)

    def step_admin_listings(self):
        a = admin_env()
        catalog = self.js(a, "catalog", "list")
        types = {c["Type"] for c in catalog}
        self.assertIn("identity", types, catalog)
        endpoints = self.js(a, "endpoint", "list")
        ident = [e for e in endpoints if e["Service Type"] == "identity"]
        self.assertTrue(ident, "no identity endpoint: %r" % endpoints)
        self.assertTrue(any(e["Interface"] == "public" and e["Region"] == "RegionOne"
                            for e in ident), endpoints)
        projects = {p["Name"] for p in self.js(a, "project", "list")}
        self.assertTrue({"admin", S["p1_name"], S["p2_name"]} <= projects, projects)
        users = {u["Name"] for u in self.js(a, "user", "list")}
        self.assertTrue({"admin", S["u1_name"], S["u2_name"]} <= users, users)
        dom = self.js(a, "domain", "show", "default")
        self.assertEqual((dom["id"], dom["name"], dom["enabled"]), ("default", "Default", True))
        roles = {r["Name"] for r in self.js(a, "role", "list")}
        self.assertTrue({"admin", "member", "reader"} <= roles, roles)

    def step_member_app_credential(self):
        for n in (1, 2):
            env = user_env(S["u%d_name" % n], S["u%d_pw" % n], S["p%d_name" % n])
            tok = self.js(env, "token", "issue")
            self.assertEqual((tok["user_id"], tok["project_id"]), (S["u%d" % n], S["p%d" % n]))
            ac = self.js(env, "application", "credential", "create", "--description",
                         "e2e", "e2e-ac%d" % n)
            self.assertTrue(ac.get("secret"), "no secret in %r" % ac)
            self.assertEqual(ac["project_id"], S["p%d" % n])
            S["ac%d" % n] = ac["id"]
            S["ac%d_secret" % n] = ac["secret"]
            listed = self.js(env, "application", "credential", "list")
            self.assertEqual([a["ID"] for a in listed], [ac["id"]])

    def step_app_credential_token(self):
        tok = self.js(appcred_env(S["ac1"], S["ac1_secret"]), "token", "issue")
        self.assertEqual(tok["project_id"], S["p1"])
        self.assertEqual(tok["user_id"], S["u1"])
        code, _, err = osc(appcred_env(S["ac1"], "wrong-secret"), "token", "issue")
        self.assertNotEqual(code, 0)
        self.assertTrue("HTTP 401" in err or "authenticat" in err.lower(), err[-800:])

    def step_member_forbidden(self):
        env = user_env(S["u1_name"], S["u1_pw"], S["p1_name"])
        self.forbidden(env, "project", "create", "e2e-forbidden-" + S["sfx"])
        self.forbidden(env, "user", "create", "--password", "x", "e2e-forbidden-" + S["sfx"])
        self.forbidden(env, "role", "add", "--project", S["p1"], "--user", S["u1"], "admin")
        self.forbidden(env, "domain", "create", "e2e-forbidden-" + S["sfx"])
        # Nothing was created by the refused calls.
        names = {p["Name"] for p in self.js(admin_env(), "project", "list")}
        self.assertNotIn("e2e-forbidden-" + S["sfx"], names)

    def step_project_isolation(self):
        env1 = user_env(S["u1_name"], S["u1_pw"], S["p1_name"])
        mine = self.js(env1, "project", "list", "--my-projects")
        self.assertEqual([p["ID"] for p in mine], [S["p1"]], "u1 sees %r" % mine)
        self.forbidden(env1, "project", "show", S["p2"])
        self.forbidden(env1, "user", "show", S["u2"])
        self.forbidden(env1, "user", "list")
        # OSC falls back to the user's own projects when GET /v3/projects is refused.
        listed = self.js(env1, "project", "list")
        self.assertEqual([p["ID"] for p in listed], [S["p1"]], "u1 project list: %r" % listed)
        self.forbidden(env1, "application", "credential", "list", "--user", S["u2"])
        self.fails_not_found_or_forbidden(env1, "application", "credential", "show", S["ac2"])
        self.fails_not_found_or_forbidden(env1, "application", "credential", "delete",
                                          S["ac2"])
        # u2's credential still works after u1 tried to delete it.
        tok = self.js(appcred_env(S["ac2"], S["ac2_secret"]), "token", "issue")
        self.assertEqual(tok["project_id"], S["p2"])
        # A member sees only its own user and its own credentials.
        me = self.js(env1, "user", "show", S["u1"])
        self.assertEqual(me["name"], S["u1_name"])
        listed = self.js(env1, "application", "credential", "list")
        self.assertEqual([a["ID"] for a in listed], [S["ac1"]])

    def step_deletes(self):
        env1 = user_env(S["u1_name"], S["u1_pw"], S["p1_name"])
        self.ok(env1, "application", "credential", "delete", S["ac1"])
        code, _, _ = osc(appcred_env(S["ac1"], S["ac1_secret"]), "token", "issue")
        self.assertNotEqual(code, 0, "a deleted application credential still authenticates")
        a = admin_env()
        self.ok(a, "role", "remove", "--project", S["p2"], "--user", S["u2"], "member")
        for n in (1, 2):
            self.ok(a, "user", "delete", S["u%d" % n])
            self.ok(a, "project", "delete", S["p%d" % n])
        users = {u["ID"] for u in self.js(a, "user", "list")}
        self.assertFalse({S["u1"], S["u2"]} & users)
        projects = {p["ID"] for p in self.js(a, "project", "list")}
        self.assertFalse({S["p1"], S["p2"]} & projects)


if __name__ == "__main__":
    unittest.main()
