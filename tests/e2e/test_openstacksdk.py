"""End-to-end: openstacksdk 0.101 (Debian) against `concord`.

Runs on /usr/bin/python3 (Debian's Python, which has openstacksdk). Connections are built
from explicit arguments (no clouds.yaml or OS_* lookup) with a bounded api_timeout, so the
test cannot pick up a developer's cloud or hang.
"""
import os
import sys
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import concord_launcher  # noqa: E402

import openstack  # noqa: E402
from openstack import exceptions as osexc  # noqa: E402

openstack.enable_logging(debug=False)
SRV = None


def setUpModule():
    global SRV
    SRV = concord_launcher.start_server(unittest.addModuleCleanup)


def connect(**auth):
    args = dict(auth_url=SRV.auth_url, region_name="RegionOne", interface="public",
                identity_api_version="3", api_timeout=60, load_yaml_config=False,
                load_envvars=False)
    if "application_credential_id" in auth:
        args["auth_type"] = "v3applicationcredential"
    else:
        args.update(user_domain_name="Default", project_domain_name="Default")
    args.update(auth)
    return openstack.connect(**args)


class OpenStackSdkTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.admin = connect(username="admin", password=SRV.admin_password, project_name="admin")
        cls.sfx = uuid.uuid4().hex[:6]

    def assert_status(self, status, fn, *args, **kwargs):
        statuses = (status,) if isinstance(status, int) else status
        with self.assertRaises(osexc.HttpException) as ctx:
            fn(*args, **kwargs)
        self.assertIn(ctx.exception.status_code, statuses,
                      "%s: expected HTTP %s, got %r" % (fn.__name__, status, ctx.exception))

    def make_tenant(self, n):
        """A project with one member user; returns (project, user, password)."""
        idn = self.admin.identity
        project = idn.create_project(name="sdk-p%d-%s" % (n, self.sfx), domain_id="default",
                                     description="sdk %d" % n)
        password = "sdk-pw-%d-%s" % (n, self.sfx)
        user = idn.create_user(name="sdk-u%d-%s" % (n, self.sfx), password=password,
                               domain_id="default", default_project_id=project.id,
                               email="sdk%d@example.org" % n)
        member = idn.find_role("member", ignore_missing=False)
        idn.assign_project_role_to_user(project, user, member)
        self.addCleanup(self.cleanup_tenant, project.id, user.id)
        return project, user, password

    def cleanup_tenant(self, pid, uid):
        try:
            self.admin.identity.delete_user(uid, ignore_missing=True)
            self.admin.identity.delete_project(pid, ignore_missing=True)
        except Exception as e:  # cleanup must not hide the test's own failure
            print("cleanup of %s/%s failed: %r" % (pid, uid, e))

    def test_admin_password_connection_and_listing(self):
        self.admin.authorize()
        self.assertTrue(self.admin.current_user_id)
        names = {p.name for p in self.admin.identity.projects()}
        self.assertIn("admin", names)
        roles = {r.name for r in self.admin.identity.roles()}
        self.assertTrue({"admin", "member", "reader"} <= roles, roles)
        dom = self.admin.identity.get_domain("default")
        self.assertEqual((dom.name, dom.is_enabled), ("Default", True))
        services = {s.type for s in self.admin.identity.services()}
        self.assertIn("identity", services)
        self.assertTrue(list(self.admin.identity.endpoints()))
        self.assertTrue(self.admin.identity.find_region("RegionOne"))

    def test_project_and_user_lifecycle(self):
        idn = self.admin.identity
        project = idn.create_project(name="sdk-life-" + self.sfx, domain_id="default",
                                     description="first")
        self.assertEqual(idn.find_project(project.name).id, project.id)
        self.assertEqual(idn.get_project(project.id).description, "first")
        idn.update_project(project, description="second", is_enabled=False)
        got = idn.get_project(project.id)
        self.assertEqual((got.description, got.is_enabled), ("second", False))
        user = idn.create_user(name="sdk-life-u-" + self.sfx, password="pw-life",
                               domain_id="default", default_project_id=project.id)
        self.assertEqual(idn.find_user(user.name).id, user.id)
        self.assertEqual(idn.get_user(user.id).default_project_id, project.id)
        idn.update_user(user, email="life@example.org")
        self.assertEqual(idn.get_user(user.id).email, "life@example.org")
        idn.delete_user(user)
        self.assertIsNone(idn.find_user(user.name))
        self.assert_status(404, idn.get_user, user.id)
        idn.delete_project(project)
        self.assertIsNone(idn.find_project(project.name))
        self.assert_status(404, idn.get_project, project.id)

    def test_role_assignment_and_app_credential(self):
        idn = self.admin.identity
        project, user, password = self.make_tenant(1)
        member = idn.find_role("member", ignore_missing=False)
        self.assertTrue(idn.validate_user_has_project_role(project, user, member))
        assigned = [(a.user["id"], a.role["id"]) for a in
                    idn.role_assignments(scope_project_id=project.id)]
        self.assertEqual(assigned, [(user.id, member.id)])

        conn = connect(username=user.name, password=password, project_name=project.name)
        conn.authorize()
        self.assertEqual(conn.current_project_id, project.id)
        ac = conn.identity.create_application_credential(user=user.id, name="sdk-ac",
                                                         description="sdk")
        self.assertTrue(ac.secret)
        self.assertEqual(ac.project_id, project.id)
        got = conn.identity.get_application_credential(user=user.id, application_credential=ac.id)
        self.assertEqual(got.name, "sdk-ac")
        self.assertFalse(got.secret, "GET must not return the secret")
        ac_conn = connect(application_credential_id=ac.id, application_credential_secret=ac.secret)
        ac_conn.authorize()
        self.assertEqual(ac_conn.current_project_id, project.id)
        self.assertEqual(ac_conn.current_user_id, user.id)
        conn.identity.delete_application_credential(user=user.id, application_credential=ac.id)
        bad = connect(application_credential_id=ac.id, application_credential_secret=ac.secret)
        with self.assertRaises(osexc.SDKException):
            bad.authorize()

        idn.unassign_project_role_from_user(project, user, member)
        self.assertFalse(idn.validate_user_has_project_role(project, user, member))

    def test_two_projects_are_isolated(self):
        p1, u1, pw1 = self.make_tenant(2)
        p2, u2, pw2 = self.make_tenant(3)
        c1 = connect(username=u1.name, password=pw1, project_name=p1.name)
        c2 = connect(username=u2.name, password=pw2, project_name=p2.name)
        ac2 = c2.identity.create_application_credential(user=u2.id, name="sdk-iso-ac2")
        ac1 = c1.identity.create_application_credential(user=u1.id, name="sdk-iso-ac1")

        self.assertEqual(c1.identity.get_project(p1.id).name, p1.name)
        self.assert_status(403, c1.identity.get_project, p2.id)
        self.assertEqual(c1.identity.get_user(u1.id).name, u1.name)
        self.assert_status(403, c1.identity.get_user, u2.id)
        self.assert_status(403, lambda: list(c1.identity.users()))
        self.assert_status(403, lambda: list(c1.identity.projects()))
        mine = [p.id for p in c1.identity.user_projects(u1.id)]
        self.assertEqual(mine, [p1.id])
        self.assert_status(403, lambda: list(c1.identity.user_projects(u2.id)))
        self.assertEqual([a.id for a in c1.identity.application_credentials(user=u1.id)],
                         [ac1.id])
        self.assert_status(403, lambda: list(c1.identity.application_credentials(user=u2.id)))
        # Keystone answers 403 (the policy target is u2's credential); 404 reveals no more.
        self.assert_status((403, 404), c1.identity.get_application_credential, user=u1.id,
                           application_credential=ac2.id)
        self.assert_status(403, c1.identity.get_application_credential, user=u2.id,
                           application_credential=ac2.id)
        self.assert_status(403, c1.identity.delete_application_credential, user=u2.id,
                           application_credential=ac2.id)
        # u2's credential survived u1's attempts.
        ac_conn = connect(application_credential_id=ac2.id,
                          application_credential_secret=ac2.secret)
        ac_conn.authorize()
        self.assertEqual(ac_conn.current_project_id, p2.id)
        # A member cannot grant itself more.
        admin_role = self.admin.identity.find_role("admin", ignore_missing=False)
        # The SDK returns False instead of raising when the PUT is refused.
        self.assertFalse(c1.identity.assign_project_role_to_user(p1, u1, admin_role))
        self.assertFalse(self.admin.identity.validate_user_has_project_role(p1, u1, admin_role))
        self.assert_status(403, c1.identity.create_project, name="sdk-forbidden-" + self.sfx)


if __name__ == "__main__":
    unittest.main()
