"""Bad input against the real binary on every compute (Nova) and image (Glance) route.

The issue's bar: wrong types, unknown ids, bad microversions, oversize user data and images that
lie about their format all get an error in the API's own format, never a 500, a crash or a hang.

Data-driven like test_bad_input.py: CASES is a table of request -> expected status(es); each row
becomes one test method (test_case_<name>) so a failure names the row. The service is known from
the path:
  * Nova (/compute/v2.1/...): every answer carries `OpenStack-API-Version: compute X.Y` and the
    same X.Y in `X-OpenStack-Nova-API-Version` (echoing the requested microversion when it was
    valid); errors are application/json {"<faultName>": {"code": status, "message": str}} with
    Nova's fault name for the status (computeFault, Nova's 500, never).
  * Glance (/image/v2/...): errors are text/plain (or HTML) whose body starts with the status
    line, as Glance's webob errors do; JSON is never the error format there.
The 405 rows are derived from COMPUTE_ROUTES / IMAGE_ROUTES (the routes registered in
src/compute/service/api_*.cc and src/image/image_service.cc), so adding a route adds its checks.

The server runs with the in-process agent disabled: no workload runs, so the fixture server
never leaves the scheduler (it goes to ERROR: no host). Rows on its actions therefore see a
state conflict (409) whenever the input itself is valid; they still prove that validation,
lookup and state checks answer as Nova does.

Route families still being written go in PENDING_ROUTES: for their rows the router's own 404
("The resource could not be found: <path>") is accepted too, and the rows that got it are listed
on stderr at the end; once the routes answer, the entry is removed and the rows are strict.

EXPECTED_BUGS names rows that find a known bug outside src/image (compute, or the HTTP layer's
errors before routing): they skip with the reason until the lead fixes the bug and empties the
list; CONCORD_RUN_EXPECTED_BUGS=1 runs them anyway. 501 (Nova's notImplemented fault for
actions this cloud does not offer) is the one 5xx status a row may name; the no-5xx checks at
the end exclude exactly the 501s that rows expected.
"""
import base64
import json
import os
import re
import socket
import struct
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_launcher  # noqa: E402

SRV = None
FIX = {}          # fixture ids used in paths and bodies
STATUSES = []     # (case, status, 501 expected) of every answer, for the no-5xx checks
PENDING_404 = []  # rows of PENDING_ROUTES that got the router's 404

C = "/compute/v2.1"
I = "/image/v2"
REQUEST_TIMEOUT = 20.0
MAX_IMAGE_BYTES = 1 << 20

# Rows that hit a known bug in src/compute or src/http (reported to the lead). name -> reason.
# The lead empties this after the fix; a row listed here skips instead of failing
# (CONCORD_RUN_EXPECTED_BUGS=1 runs them anyway, to see whether they still fail).
EXPECTED_BUGS = {
    "create_networks_missing_2_37":
        "deliberate: Nova requires 'networks' from 2.37 on (400), Concord takes its absence as "
        "'auto' because Tempest, with no Neutron, creates servers without it "
        "(tempest/lib/common/fixed_network.py); see src/compute/service/api_servers.cc",
}

# Path fragments of route families not served yet: their rows also accept the router's own
# 404. Empty: os-aggregates, os-hosts, os-migrations, os-simple-tenant-usage, the image proxy,
# os-server-password, diagnostics, external events, extensions and hypervisor uptime were
# listed here while they were being written; all of them answer now, so their rows are strict.
PENDING_ROUTES = ()


def setUpModule():
    global SRV
    # No agent: nothing runs. A small image limit so the oversize-upload row stays cheap.
    SRV = concord_launcher.start_server(
        unittest.addModuleCleanup,
        extra_args=["--agent.enabled=false", "--image.max_image_bytes=%d" % MAX_IMAGE_BYTES])
    token, body = SRV.issue_token("admin", SRV.admin_password, "admin")
    FIX["token"] = token
    FIX["admin_pid"] = body["project"]["id"]
    sfx = uuid.uuid4().hex[:8]
    FIX["sfx"] = sfx
    FIX["unknown"] = str(uuid.uuid4())

    def call(method, path, body=None, expect=(200, 201, 202, 204), headers=None, tok=None):
        r = SRV.request(method, path, body, headers=headers, token=tok or token,
                        timeout=REQUEST_TIMEOUT)
        if r.status not in expect:
            raise AssertionError("fixture %s %s: %r" % (method, path, r))
        return r

    # A member (not admin) in its own project, for the 403 rows.
    v3 = SRV.v3
    pid = call("POST", v3 + "/projects", {"project": {"name": "bic-p-" + sfx,
                                                       "domain_id": "default"}}).json()
    FIX["member_pid"] = pid["project"]["id"]
    uid = call("POST", v3 + "/users", {"user": {"name": "bic-u-" + sfx, "domain_id": "default",
                                                "password": "pw-" + sfx}}).json()["user"]["id"]
    roles = call("GET", v3 + "/roles?name=member").json()["roles"]
    if not roles:
        raise AssertionError("no member role in the bootstrap")
    call("PUT", "%s/projects/%s/users/%s/roles/%s" % (v3, FIX["member_pid"], uid,
                                                      roles[0]["id"]))
    FIX["member"] = SRV.issue_token("bic-u-" + sfx, "pw-" + sfx, "bic-p-" + sfx)[0]

    # Images: one active raw image, one private, a queued one, and one queued image per lie.
    def image(name, **kw):
        obj = {"name": "bic-" + name + "-" + sfx, "disk_format": "raw",
               "container_format": "bare"}
        obj.update(kw)
        return call("POST", I + "/images", obj, expect=(201,)).json()["id"]

    octet = {"Content-Type": "application/octet-stream"}
    FIX["img"] = image("active")
    call("PUT", "%s/images/%s/file" % (I, FIX["img"]), os.urandom(4096), headers=octet,
         expect=(204,))
    FIX["img_private"] = image("private", visibility="private")
    FIX["img_queued"] = image("queued")
    FIX["img_protected"] = image("protected", protected=True)
    FIX["img_lie_qcow2"] = image("lie-qcow2", disk_format="qcow2")
    FIX["img_lie_raw"] = image("lie-raw")
    FIX["img_lie_docker"] = image("lie-docker", container_format="docker")
    FIX["img_lie_iso"] = image("lie-iso", disk_format="iso")
    FIX["img_lie_descriptor"] = image("lie-descriptor")
    FIX["img_tagged"] = image("tagged")
    FIX["img_member"] = image("member")  # shared by default: one member already
    call("POST", "%s/images/%s/members" % (I, FIX["img_member"]),
         {"member": FIX["member_pid"]}, expect=(200,))
    FIX["img_big"] = image("big")
    # Shared with the member, who accepts: one active, one deactivated.
    for key in ("img_shared", "img_deactivated"):
        FIX[key] = image(key)
        call("PUT", "%s/images/%s/file" % (I, FIX[key]), os.urandom(1024), headers=octet,
             expect=(204,))
        call("POST", "%s/images/%s/members" % (I, FIX[key]), {"member": FIX["member_pid"]},
             expect=(200,))
        call("PUT", "%s/images/%s/members/%s" % (I, FIX[key], FIX["member_pid"]),
             {"status": "accepted"}, expect=(200,), tok=FIX["member"])
    call("POST", "%s/images/%s/actions/deactivate" % (I, FIX["img_deactivated"]), expect=(204,))

    # Flavors: a public and a private one with an extra spec.
    def flavor(name, public):
        return call("POST", C + "/flavors", {"flavor": {
            "name": "bic-" + name + "-" + sfx, "ram": 64, "vcpus": 1, "disk": 1,
            "os-flavor-access:is_public": public}}).json()["flavor"]["id"]
    FIX["flavor"] = flavor("public", True)
    FIX["flavor_private"] = flavor("private", False)
    call("POST", "%s/flavors/%s/os-extra_specs" % (C, FIX["flavor"]),
         {"extra_specs": {"hw:cpu_policy": "shared"}})

    FIX["keypair"] = "bic-kp-" + sfx
    call("POST", C + "/os-keypairs", {"keypair": {"name": FIX["keypair"]}})
    FIX["group"] = call("POST", C + "/os-server-groups", {"server_group": {
        "name": "bic-g-" + sfx, "policies": ["anti-affinity"]}}).json()["server_group"]["id"]

    # The server: with no agent it never gets a host. Wait until the scheduler has decided so
    # the action rows see one state (bounded: it stays BUILD only if nothing ever decides).
    FIX["server"] = call("POST", C + "/servers", {"server": {
        "name": "bic-s-" + sfx, "imageRef": FIX["img"], "flavorRef": FIX["flavor"],
        "metadata": {"k": "v"}}}, expect=(202,)).json()["server"]["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = call("GET", "%s/servers/%s" % (C, FIX["server"]))
        if r.json()["server"]["status"] != "BUILD":
            break
        time.sleep(0.1)
    FIX["server_status"] = r.json()["server"]["status"]
    actions = call("GET", "%s/servers/%s/os-instance-actions" % (C, FIX["server"])).json()
    FIX["request_id"] = actions["instanceActions"][0]["request_id"]


def tearDownModule():
    if PENDING_404:
        sys.stderr.write("\nrows answered by the router's 404 (route not there yet): %s\n"
                         % ", ".join(sorted(PENDING_404)))


# ---- the table --------------------------------------------------------------------------------

ADMIN = "admin"     # token kinds
MEMBER = "member"
NOAUTH = None


def v(version):
    return {"OpenStack-API-Version": "compute " + version}


def server(**fields):
    obj = {"name": "bic-x", "imageRef": "{img}", "flavorRef": "{flavor}"}
    obj.update(fields)
    return {"server": obj}


def b64(n):
    return base64.b64encode(b"u" * n).decode()


def qcow2_header():
    # A version-3 qcow2 header for a 1 MiB disk, then zeros: what a raw claim must refuse.
    return (b"QFI\xfb" + struct.pack(">I", 3) + b"\0" * 8 + struct.pack(">I", 0) +
            struct.pack(">I", 16) + struct.pack(">Q", 1 << 20) + b"\0" * 4064)


RANDOM_4K = os.urandom(4096)
# A VMDK descriptor naming a host file as its extent: refused under any claim.
VMDK_DESCRIPTOR = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                   b'createType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n')
NOT_BASE64 = "this is not base64 !!!"
S = C + "/servers/{server}"
ACT = S + "/action"
OCTET = {"Content-Type": "application/octet-stream"}
PATCH_CT = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
NESTED = b'{"server": ' + b"[" * 100000

# name, method, path, body (JSON value, str or bytes), expected status(es), token kind, headers
CASES = [
    # ---- microversions (Nova: malformed 400, out of range 406) --------------------------------
    ("mv_2_999", "GET", C + "/servers", None, 406, ADMIN, v("2.999")),
    ("mv_abc", "GET", C + "/servers", None, 400, ADMIN, v("abc")),
    ("mv_3_0", "GET", C + "/servers", None, 406, ADMIN, v("3.0")),
    ("mv_2_0", "GET", C + "/servers", None, 406, ADMIN, v("2.0")),
    ("mv_latest", "GET", C + "/servers", None, 200, ADMIN, v("latest")),
    # "compute" without a number is not a compute entry for microversion_parse (Nova), so
    # the default version applies.
    ("mv_empty_number", "GET", C + "/flavors", None, 200, ADMIN, v("")),
    ("mv_2_dot", "GET", C + "/flavors", None, 400, ADMIN, v("2.")),
    ("mv_negative", "GET", C + "/flavors", None, 400, ADMIN, v("-2.1")),
    ("mv_huge_minor", "GET", C + "/flavors", None, (400, 406), ADMIN,
     v("2.99999999999999999999999")),
    ("mv_legacy_2_999", "GET", C + "/flavors", None, 406, ADMIN,
     {"X-OpenStack-Nova-API-Version": "2.999"}),
    ("mv_legacy_abc", "GET", C + "/flavors", None, 400, ADMIN,
     {"X-OpenStack-Nova-API-Version": "abc"}),
    ("mv_legacy_3_0", "GET", C + "/os-keypairs", None, 406, ADMIN,
     {"X-OpenStack-Nova-API-Version": "3.0"}),
    ("mv_bad_on_post", "POST", C + "/servers", server(), 406, ADMIN, v("2.999")),
    ("mv_bad_on_action", "POST", ACT, {"os-stop": None}, 400, ADMIN, v("abc")),
    ("mv_bad_without_token", "GET", C + "/servers", None, (400, 401), NOAUTH, v("abc")),
    ("mv_tags_below_2_26", "GET", S + "/tags", None, 404, ADMIN, v("2.25")),
    ("mv_other_service_only", "GET", C + "/flavors", None, 200, ADMIN,
     {"OpenStack-API-Version": "volume 3.0"}),
    # ---- bodies that are not JSON objects, and content types ----------------------------------
    ("create_not_json", "POST", C + "/servers", b"{not json", 400, ADMIN, {}),
    ("create_trailing_garbage", "POST", C + "/servers", b'{"server": {}} xyz', 400, ADMIN, {}),
    ("create_empty_body", "POST", C + "/servers", b"", 400, ADMIN, {}),
    ("create_body_array", "POST", C + "/servers", [], 400, ADMIN, {}),
    ("create_body_string", "POST", C + "/servers", "\"server\"", 400, ADMIN, {}),
    ("create_body_null", "POST", C + "/servers", b"null", 400, ADMIN, {}),
    ("create_body_number", "POST", C + "/servers", b"42", 400, ADMIN, {}),
    ("create_server_array", "POST", C + "/servers", {"server": []}, 400, ADMIN, {}),
    ("create_server_string", "POST", C + "/servers", {"server": "x"}, 400, ADMIN, {}),
    ("create_missing_wrapper", "POST", C + "/servers",
     {"name": "x", "imageRef": "{img}", "flavorRef": "{flavor}"}, 400, ADMIN, {}),
    ("create_nested_100k", "POST", C + "/servers", NESTED, 400, ADMIN, {}),
    ("create_nested_objects_20k", "POST", C + "/servers", b'{"a":' * 20000, 400, ADMIN, {}),
    ("create_text_plain", "POST", C + "/servers", server(), (400, 415), ADMIN,
     {"Content-Type": "text/plain"}),
    ("create_xml", "POST", C + "/servers", b"<server name='x'/>", (400, 415), ADMIN,
     {"Content-Type": "application/xml"}),
    ("action_text_plain", "POST", ACT, {"os-stop": None}, (400, 415), ADMIN,
     {"Content-Type": "text/plain"}),
    ("flavor_create_not_json", "POST", C + "/flavors", b"flavor", 400, ADMIN, {}),
    ("keypair_create_array", "POST", C + "/os-keypairs", [{"keypair": {}}], 400, ADMIN, {}),
    ("quota_put_not_json", "PUT", C + "/os-quota-sets/{member_pid}", b"{", 400, ADMIN, {}),
    ("metadata_not_json", "POST", S + "/metadata", b"metadata=1", 400, ADMIN, {}),
    ("group_create_null", "POST", C + "/os-server-groups", b"null", 400, ADMIN, {}),
    # ---- servers: create with wrong types and bad values --------------------------------------
    ("create_missing_name", "POST", C + "/servers",
     {"server": {"imageRef": "{img}", "flavorRef": "{flavor}"}}, 400, ADMIN, {}),
    ("create_name_number", "POST", C + "/servers", server(name=5), 400, ADMIN, {}),
    ("create_name_null", "POST", C + "/servers", server(name=None), 400, ADMIN, {}),
    ("create_name_empty", "POST", C + "/servers", server(name=""), 400, ADMIN, {}),
    ("create_name_256", "POST", C + "/servers", server(name="n" * 256), 400, ADMIN, {}),
    ("create_name_control_chars", "POST", C + "/servers", server(name="bic\x01\x07x"),
     400, ADMIN, {}),
    ("create_name_leading_space", "POST", C + "/servers", server(name=" bic"), 400, ADMIN, {}),
    ("create_name_invalid_utf8", "POST", C + "/servers",
     b'{"server": {"name": "bic-\xff\xfe", "imageRef": "{img}", "flavorRef": "{flavor}"}}',
     400, ADMIN, {}),
    ("create_name_lone_surrogate", "POST", C + "/servers",
     b'{"server": {"name": "bic-\\ud800", "imageRef": "{img}", "flavorRef": "{flavor}"}}',
     400, ADMIN, {}),
    ("create_image_number", "POST", C + "/servers", server(imageRef=5), 400, ADMIN, {}),
    ("create_image_unknown_uuid", "POST", C + "/servers", server(imageRef="{unknown}"),
     400, ADMIN, {}),
    ("create_image_malformed", "POST", C + "/servers", server(imageRef="not-a-uuid"),
     400, ADMIN, {}),
    ("create_image_queued", "POST", C + "/servers", server(imageRef="{img_queued}"),
     400, ADMIN, {}),
    ("create_image_other_private", "POST", C + "/servers", server(imageRef="{img_private}"),
     400, MEMBER, {}),
    ("create_flavor_unknown", "POST", C + "/servers", server(flavorRef="no-such-flavor"),
     400, ADMIN, {}),
    ("create_flavor_list", "POST", C + "/servers", server(flavorRef=["1"]), 400, ADMIN, {}),
    ("create_flavor_missing", "POST", C + "/servers",
     {"server": {"name": "x", "imageRef": "{img}"}}, 400, ADMIN, {}),
    ("create_flavor_private_no_access", "POST", C + "/servers",
     server(flavorRef="{flavor_private}"), 400, MEMBER, {}),
    ("create_min_count_string", "POST", C + "/servers", server(min_count="abc"),
     400, ADMIN, {}),
    ("create_min_count_zero", "POST", C + "/servers", server(min_count=0), 400, ADMIN, {}),
    ("create_max_below_min", "POST", C + "/servers", server(min_count=3, max_count=2),
     400, ADMIN, {}),
    ("create_max_count_huge", "POST", C + "/servers", server(max_count=10 ** 30),
     400, ADMIN, {}),
    ("create_metadata_list", "POST", C + "/servers", server(metadata=["a"]), 400, ADMIN, {}),
    ("create_metadata_value_number", "POST", C + "/servers", server(metadata={"a": 5}),
     400, ADMIN, {}),
    ("create_metadata_key_256", "POST", C + "/servers", server(metadata={"k" * 256: "v"}),
     400, ADMIN, {}),
    ("create_metadata_value_256", "POST", C + "/servers", server(metadata={"k": "v" * 256}),
     400, ADMIN, {}),
    ("create_metadata_empty_key", "POST", C + "/servers", server(metadata={"": "v"}),
     400, ADMIN, {}),
    ("create_user_data_oversize", "POST", C + "/servers", server(user_data=b64(49200)),
     400, ADMIN, {}),
    ("create_user_data_1mib", "POST", C + "/servers", server(user_data=b64(1 << 20)),
     (400, 413), ADMIN, {}),
    ("create_user_data_not_base64", "POST", C + "/servers", server(user_data=NOT_BASE64),
     400, ADMIN, {}),
    ("create_user_data_bad_padding", "POST", C + "/servers", server(user_data="YWJj="),
     400, ADMIN, {}),
    ("create_user_data_number", "POST", C + "/servers", server(user_data=5), 400, ADMIN, {}),
    ("create_key_name_unknown", "POST", C + "/servers", server(key_name="no-such-key"),
     400, ADMIN, {}),
    ("create_key_name_number", "POST", C + "/servers", server(key_name=5), 400, ADMIN, {}),
    ("create_az_unknown", "POST", C + "/servers", server(availability_zone="no-such-az"),
     400, ADMIN, {}),
    ("create_az_number", "POST", C + "/servers", server(availability_zone=5), 400, ADMIN, {}),
    ("create_networks_number", "POST", C + "/servers", server(networks=5), 400, ADMIN,
     v("2.37")),
    ("create_networks_missing_2_37", "POST", C + "/servers", server(), 400, ADMIN, v("2.37")),
    ("create_networks_bad_word", "POST", C + "/servers", server(networks="everything"),
     400, ADMIN, v("2.37")),
    ("create_networks_bad_uuid", "POST", C + "/servers",
     server(networks=[{"uuid": "not-a-uuid"}]), 400, ADMIN, v("2.37")),
    ("create_bdm_not_list", "POST", C + "/servers", server(block_device_mapping_v2=5),
     400, ADMIN, {}),
    ("create_bdm_bad_item", "POST", C + "/servers",
     server(block_device_mapping_v2=[{"boot_index": "first", "source_type": "warp"}]),
     400, ADMIN, {}),
    ("create_security_groups_string", "POST", C + "/servers", server(security_groups="default"),
     400, ADMIN, {}),
    ("create_access_ipv4_bad", "POST", C + "/servers", server(accessIPv4="300.1.2.3"),
     400, ADMIN, {}),
    ("create_access_ipv6_bad", "POST", C + "/servers", server(accessIPv6="::zz"),
     400, ADMIN, {}),
    ("create_config_drive_maybe", "POST", C + "/servers", server(config_drive="maybe"),
     400, ADMIN, {}),
    ("create_disk_config_bogus", "POST", C + "/servers", server(**{"OS-DCF:diskConfig": "X"}),
     400, ADMIN, {}),
    ("create_unknown_property", "POST", C + "/servers", server(bogus_property=1),
     400, ADMIN, {}),
    ("create_scheduler_hints_number", "POST", C + "/servers",
     dict(server(), **{"os:scheduler_hints": 5}), 400, ADMIN, {}),
    ("create_group_hint_unknown", "POST", C + "/servers",
     dict(server(), **{"os:scheduler_hints": {"group": "{unknown}"}}), (400, 404), ADMIN, {}),
    ("create_tags_too_many", "POST", C + "/servers",
     server(tags=["t%d" % i for i in range(51)]), 400, ADMIN, v("2.52")),
    ("create_tags_number", "POST", C + "/servers", server(tags=[5]), 400, ADMIN, v("2.52")),
    ("create_description_number", "POST", C + "/servers", server(description=5),
     400, ADMIN, v("2.19")),
    ("create_host_non_admin", "POST", C + "/servers", server(host="h1"), (400, 403), MEMBER,
     v("2.74")),
    ("create_no_token", "POST", C + "/servers", server(), 401, NOAUTH, {}),
    ("create_count_over_quota", "POST", C + "/servers", server(min_count=1000, max_count=1000),
     403, ADMIN, {}),
    ("create_metadata_over_quota", "POST", C + "/servers",
     server(metadata={"k%d" % i: "v" for i in range(1000)}), (400, 403), ADMIN, {}),
    ("create_personality_bad", "POST", C + "/servers",
     server(personality=[{"path": "/x", "contents": NOT_BASE64}]), 400, ADMIN, {}),
    ("create_personality_string", "POST", C + "/servers", server(personality="x"), 400, ADMIN,
     {}),
    ("create_number_out_of_range", "POST", C + "/servers",
     b'{"server": {"name": "x", "imageRef": "{img}", "flavorRef": "{flavor}", "min_count": 1e400}}',
     400, ADMIN, {}),
    ("create_bdm_volume", "POST", C + "/servers",
     server(block_device_mapping_v2=[{"boot_index": 0, "uuid": "{img}", "source_type": "image",
                                      "destination_type": "volume", "volume_size": 1}]),
     400, ADMIN, {}),
    ("create_networks_unknown_port", "POST", C + "/servers", server(networks=[{"port": "abc"}]),
     400, ADMIN, v("2.37")),
    ("create_networks_bad_fixed_ip", "POST", C + "/servers",
     server(networks=[{"fixed_ip": "1.2.3.999"}]), 400, ADMIN, v("2.37")),
    ("create_az_unknown_host", "POST", C + "/servers", server(availability_zone="nova:no-host"),
     (400, 403), ADMIN, {}),
    ("create_az_too_many_colons", "POST", C + "/servers", server(availability_zone="a:b:c:d"),
     400, ADMIN, {}),
    ("create_hypervisor_unknown", "POST", C + "/servers", server(hypervisor_hostname="no-hv"),
     400, ADMIN, v("2.74")),
    ("create_trusted_certs", "POST", C + "/servers", server(trusted_image_certificates=["x"]),
     400, ADMIN, v("2.63")),
    ("create_garbage_token", "POST", C + "/servers", server(), 401, NOAUTH,
     {"X-Auth-Token": "garbage"}),
    # ---- servers: show / list / update / delete -----------------------------------------------
    ("show_unknown_uuid", "GET", C + "/servers/{unknown}", None, 404, ADMIN, {}),
    ("show_malformed_id", "GET", C + "/servers/not-a-uuid", None, 404, ADMIN, {}),
    ("show_invalid_utf8_id", "GET", C + "/servers/%FF%FE", None, 404, ADMIN, {}),
    ("show_nul_id", "GET", C + "/servers/%00", None, (400, 404), ADMIN, {}),
    ("show_long_id", "GET", C + "/servers/" + "a" * 5000, None, 404, ADMIN, {}),
    ("show_other_project", "GET", S, None, 404, MEMBER, {}),
    ("list_limit_negative", "GET", C + "/servers?limit=-1", None, 400, ADMIN, {}),
    ("list_limit_string", "GET", C + "/servers?limit=abc", None, 400, ADMIN, {}),
    ("list_limit_huge", "GET", C + "/servers?limit=99999999999999999999", None, (200, 400),
     ADMIN, {}),
    ("list_marker_unknown", "GET", C + "/servers?marker={unknown}", None, 400, ADMIN, {}),
    ("list_marker_garbage", "GET", C + "/servers/detail?marker=%FF%00", None, 400, ADMIN, {}),
    ("list_marker_huge", "GET", C + "/servers?marker=" + "m" * 4000, None, 400, ADMIN, {}),
    ("list_sort_key_bogus", "GET", C + "/servers?sort_key=bogus", None, 400, ADMIN, {}),
    ("list_sort_dir_bogus", "GET", C + "/servers?sort_dir=sideways", None, 400, ADMIN, {}),
    ("list_sort_key_injection", "GET", C + "/servers?sort_key=name%3BDROP%20TABLE", None, 400,
     ADMIN, {}),
    ("list_changes_since_garbage", "GET", C + "/servers?changes-since=yesterday", None, 400,
     ADMIN, {}),
    ("list_changes_before_garbage", "GET", C + "/servers?changes-before=x", None, 400, ADMIN,
     v("2.66")),
    ("list_status_bogus", "GET", C + "/servers?status=BOGUS", None, (200, 400), ADMIN, {}),
    ("list_all_tenants_member", "GET", C + "/servers/detail?all_tenants=1", None, (200, 403),
     MEMBER, {}),
    ("list_query_invalid_utf8", "GET", C + "/servers?name=%FF%FE", None, 400, ADMIN, {}),
    ("update_name_number", "PUT", S, {"server": {"name": 5}}, 400, ADMIN, {}),
    ("update_name_256", "PUT", S, {"server": {"name": "n" * 256}}, 400, ADMIN, {}),
    ("update_name_control", "PUT", S, {"server": {"name": "a\x00b"}}, 400, ADMIN, {}),
    ("update_unknown_property", "PUT", S, {"server": {"flavorRef": "1"}}, 400, ADMIN, {}),
    ("update_server_list", "PUT", S, {"server": ["x"]}, 400, ADMIN, {}),
    ("update_description_too_long", "PUT", S, {"server": {"description": "d" * 256}},
     400, ADMIN, v("2.19")),
    ("update_unknown_server", "PUT", C + "/servers/{unknown}", {"server": {"name": "x"}},
     404, ADMIN, {}),
    ("update_other_project", "PUT", S, {"server": {"name": "x"}}, 404, MEMBER, {}),
    ("delete_unknown_server", "DELETE", C + "/servers/{unknown}", None, 404, ADMIN, {}),
    ("delete_malformed_id", "DELETE", C + "/servers/not-a-uuid", None, 404, ADMIN, {}),
    ("delete_other_project", "DELETE", S, None, 404, MEMBER, {}),
    # ---- server actions: each action with wrong-typed arguments --------------------------------
    ("action_empty_object", "POST", ACT, {}, 400, ADMIN, {}),
    ("action_two_actions", "POST", ACT, {"os-stop": None, "os-start": None}, 400, ADMIN, {}),
    ("action_unknown", "POST", ACT, {"fly": None}, 400, ADMIN, {}),
    ("action_body_array", "POST", ACT, [{"os-stop": None}], 400, ADMIN, {}),
    ("action_not_json", "POST", ACT, b"os-stop", 400, ADMIN, {}),
    ("action_unknown_server", "POST", C + "/servers/{unknown}/action", {"os-stop": None},
     404, ADMIN, {}),
    ("action_other_project", "POST", ACT, {"os-stop": None}, 404, MEMBER, {}),
    ("action_stop_state", "POST", ACT, {"os-stop": None}, 409, ADMIN, {}),
    ("action_stop_number", "POST", ACT, {"os-stop": 5}, (400, 409), ADMIN, {}),
    ("action_start_string", "POST", ACT, {"os-start": "now"}, (400, 409), ADMIN, {}),
    ("action_reboot_type_number", "POST", ACT, {"reboot": {"type": 5}}, 400, ADMIN, {}),
    ("action_reboot_type_bogus", "POST", ACT, {"reboot": {"type": "MEDIUM"}}, 400, ADMIN, {}),
    ("action_reboot_string", "POST", ACT, {"reboot": "HARD"}, 400, ADMIN, {}),
    ("action_reboot_missing_type", "POST", ACT, {"reboot": {}}, 400, ADMIN, {}),
    ("action_reboot_extra", "POST", ACT, {"reboot": {"type": "HARD", "x": 1}}, 400, ADMIN, {}),
    ("action_resize_flavor_list", "POST", ACT, {"resize": {"flavorRef": []}}, 400, ADMIN, {}),
    ("action_resize_number", "POST", ACT, {"resize": 5}, 400, ADMIN, {}),
    ("action_resize_missing_flavor", "POST", ACT, {"resize": {}}, 400, ADMIN, {}),
    ("action_resize_disk_config_bogus", "POST", ACT,
     {"resize": {"flavorRef": "1", "OS-DCF:diskConfig": "X"}}, 400, ADMIN, {}),
    ("action_resize_unknown_flavor", "POST", ACT, {"resize": {"flavorRef": "no-such"}},
     (400, 409), ADMIN, {}),
    ("action_confirm_resize_state", "POST", ACT, {"confirmResize": None}, (400, 409), ADMIN,
     {}),
    ("action_revert_resize_state", "POST", ACT, {"revertResize": None}, (400, 409), ADMIN, {}),
    ("action_rebuild_image_number", "POST", ACT, {"rebuild": {"imageRef": 5}}, 400, ADMIN, {}),
    ("action_rebuild_missing_image", "POST", ACT, {"rebuild": {}}, 400, ADMIN, {}),
    ("action_rebuild_string", "POST", ACT, {"rebuild": "{img}"}, 400, ADMIN, {}),
    ("action_rebuild_name_number", "POST", ACT, {"rebuild": {"imageRef": "{img}", "name": 5}},
     400, ADMIN, {}),
    ("action_rebuild_metadata_list", "POST", ACT,
     {"rebuild": {"imageRef": "{img}", "metadata": ["a"]}}, 400, ADMIN, {}),
    ("action_rebuild_admin_pass_number", "POST", ACT,
     {"rebuild": {"imageRef": "{img}", "adminPass": 5}}, 400, ADMIN, {}),
    ("action_rebuild_user_data_not_base64", "POST", ACT,
     {"rebuild": {"imageRef": "{img}", "user_data": NOT_BASE64}}, 400, ADMIN, v("2.57")),
    ("action_rebuild_user_data_oversize", "POST", ACT,
     {"rebuild": {"imageRef": "{img}", "user_data": b64(49200)}}, 400, ADMIN, v("2.57")),
    ("action_rebuild_unknown_image", "POST", ACT, {"rebuild": {"imageRef": "{unknown}"}},
     (400, 409), ADMIN, {}),
    ("action_lock_number", "POST", ACT, {"lock": 5}, 400, ADMIN, {}),
    ("action_lock_reason_at_2_1", "POST", ACT, {"lock": {"locked_reason": "x"}}, 400, ADMIN,
     {}),
    ("action_lock_reason_number", "POST", ACT, {"lock": {"locked_reason": 5}}, 400, ADMIN,
     v("2.73")),
    ("action_lock_reason_256", "POST", ACT, {"lock": {"locked_reason": "r" * 256}}, 400,
     ADMIN, v("2.73")),
    ("action_unlock_number", "POST", ACT, {"unlock": 5}, (400, 202), ADMIN, {}),
    ("action_console_length_string", "POST", ACT, {"os-getConsoleOutput": {"length": "abc"}},
     400, ADMIN, {}),
    ("action_console_length_negative", "POST", ACT, {"os-getConsoleOutput": {"length": -5}},
     400, ADMIN, {}),
    ("action_console_length_huge", "POST", ACT,
     {"os-getConsoleOutput": {"length": 10 ** 30}}, 400, ADMIN, {}),
    ("action_console_length_float", "POST", ACT, {"os-getConsoleOutput": {"length": 1.5}},
     400, ADMIN, {}),
    ("action_console_length_list", "POST", ACT, {"os-getConsoleOutput": {"length": [1]}},
     400, ADMIN, {}),
    ("action_console_arg_string", "POST", ACT, {"os-getConsoleOutput": "all"}, 400, ADMIN, {}),
    ("action_console_extra", "POST", ACT, {"os-getConsoleOutput": {"lines": 5}}, 400, ADMIN,
     {}),
    ("action_console_unknown_server", "POST", C + "/servers/{unknown}/action",
     {"os-getConsoleOutput": {}}, 404, ADMIN, {}),
    ("action_create_image_name_number", "POST", ACT, {"createImage": {"name": 5}}, (400, 403),
     ADMIN, {}),
    ("action_create_image_string", "POST", ACT, {"createImage": "snap"}, (400, 403), ADMIN, {}),
    ("action_force_delete_state", "POST", ACT, {"forceDelete": None}, (400, 409), ADMIN, {}),
    ("action_restore_state", "POST", ACT, {"restore": None}, (400, 409), ADMIN, {}),
    ("action_pause_unsupported", "POST", ACT, {"pause": None}, (400, 409, 501), ADMIN, {}),
    ("action_shelve_unsupported", "POST", ACT, {"shelve": None}, (400, 409, 501), ADMIN, {}),
    ("action_change_password_number", "POST", ACT, {"changePassword": {"adminPass": 5}},
     (400, 409, 501), ADMIN, {}),
    ("action_migrate_live_bad", "POST", ACT, {"os-migrateLive": {"host": 5}},
     400, ADMIN, {}),
    ("action_reset_state_bogus", "POST", ACT, {"os-resetState": {"state": "bogus"}},
     400, ADMIN, {}),
    ("action_stop_member", "POST", ACT, {"os-stop": None}, 404, MEMBER, {}),
    ("action_reset_state_missing", "POST", ACT, {"os-resetState": {}}, 400, ADMIN,
     {}),
    ("action_reset_state_member", "POST", ACT, {"os-resetState": {"state": "active"}},
     403, MEMBER, {}),
    ("action_migrate_host_number", "POST", ACT, {"migrate": {"host": 5}}, 400,
     ADMIN, v("2.56")),
    ("action_migrate_arg_string", "POST", ACT, {"migrate": "anywhere"}, 400, ADMIN,
     {}),
    ("action_migrate_live_missing_host", "POST", ACT,
     {"os-migrateLive": {"block_migration": "auto"}}, 400, ADMIN, v("2.25")),
    ("action_migrate_live_block_bogus", "POST", ACT,
     {"os-migrateLive": {"host": None, "block_migration": "sometimes"}}, 400,
     ADMIN, v("2.25")),
    ("action_suspend_member", "POST", ACT, {"suspend": None}, (404, 501), MEMBER, {}),
    ("action_name_invalid_utf8", "POST", ACT, b'{"\xff\xfe": null}', 400, ADMIN, {}),
    ("action_name_huge", "POST", ACT, {"a" * 100000: None}, 400, ADMIN, {}),
    # ---- server metadata ----------------------------------------------------------------------
    ("metadata_post_number", "POST", S + "/metadata", {"metadata": 5}, 400, ADMIN, {}),
    ("metadata_put_list", "PUT", S + "/metadata", {"metadata": []}, 400, ADMIN, {}),
    ("metadata_post_value_number", "POST", S + "/metadata", {"metadata": {"a": 5}}, 400,
     ADMIN, {}),
    ("metadata_post_key_256", "POST", S + "/metadata", {"metadata": {"k" * 256: "v"}}, 400,
     ADMIN, {}),
    ("metadata_post_value_256", "POST", S + "/metadata", {"metadata": {"k": "v" * 256}}, 400,
     ADMIN, {}),
    ("metadata_post_missing_wrapper", "POST", S + "/metadata", {"a": "b"}, 400, ADMIN, {}),
    ("metadata_put_too_many", "PUT", S + "/metadata",
     {"metadata": {"k%d" % i: "v" for i in range(200)}}, (400, 403, 409), ADMIN, {}),
    ("metadata_item_key_mismatch", "PUT", S + "/metadata/k", {"meta": {"other": "v"}}, 400,
     ADMIN, {}),
    ("metadata_item_two_keys", "PUT", S + "/metadata/k", {"meta": {"k": "v", "j": "w"}}, 400,
     ADMIN, {}),
    ("metadata_item_value_number", "PUT", S + "/metadata/k", {"meta": {"k": 5}}, 400, ADMIN,
     {}),
    ("metadata_item_missing_meta", "PUT", S + "/metadata/k", {"metadata": {"k": "v"}}, 400,
     ADMIN, {}),
    ("metadata_item_get_missing", "GET", S + "/metadata/no-such-key", None, 404, ADMIN, {}),
    ("metadata_item_delete_missing", "DELETE", S + "/metadata/no-such-key", None, (404, 409),
     ADMIN, {}),
    ("metadata_unknown_server", "GET", C + "/servers/{unknown}/metadata", None, 404, ADMIN, {}),
    ("metadata_other_project", "GET", S + "/metadata", None, 404, MEMBER, {}),
    ("metadata_item_invalid_utf8_key", "GET", S + "/metadata/%FF", None, 404, ADMIN, {}),
    # ---- server tags (2.26) -------------------------------------------------------------------
    ("tags_put_string", "PUT", S + "/tags", {"tags": "a"}, 400, ADMIN, v("2.26")),
    ("tags_put_number_item", "PUT", S + "/tags", {"tags": [5]}, 400, ADMIN, v("2.26")),
    ("tags_put_too_many", "PUT", S + "/tags", {"tags": ["t%d" % i for i in range(51)]}, 400,
     ADMIN, v("2.26")),
    ("tags_put_comma", "PUT", S + "/tags", {"tags": ["a,b"]}, 400, ADMIN, v("2.26")),
    ("tags_put_slash", "PUT", S + "/tags", {"tags": ["a/b"]}, 400, ADMIN, v("2.26")),
    ("tags_put_missing_wrapper", "PUT", S + "/tags", ["a"], 400, ADMIN, v("2.26")),
    ("tag_add_too_long", "PUT", S + "/tags/" + "t" * 61, None, 400, ADMIN, v("2.26")),
    ("tag_add_comma", "PUT", S + "/tags/a%2Cb", None, 400, ADMIN, v("2.26")),
    ("tag_get_missing", "GET", S + "/tags/no-such-tag", None, 404, ADMIN, v("2.26")),
    ("tag_delete_missing", "DELETE", S + "/tags/no-such-tag", None, (404, 409), ADMIN,
     v("2.26")),
    ("tags_unknown_server", "GET", C + "/servers/{unknown}/tags", None, 404, ADMIN, v("2.26")),
    ("tags_other_project", "PUT", S + "/tags/x", None, 404, MEMBER, v("2.26")),
    # ---- instance actions ---------------------------------------------------------------------
    ("instance_action_unknown_request", "GET", S + "/os-instance-actions/req-nope", None, 404,
     ADMIN, {}),
    ("instance_actions_unknown_server", "GET", C + "/servers/{unknown}/os-instance-actions",
     None, 404, ADMIN, {}),
    ("instance_actions_other_project", "GET", S + "/os-instance-actions", None, 404, MEMBER, {}),
    ("instance_actions_limit_negative", "GET", S + "/os-instance-actions?limit=-1", None, 400,
     ADMIN, v("2.58")),
    ("instance_actions_marker_unknown", "GET", S + "/os-instance-actions?marker=req-nope",
     None, 400, ADMIN, v("2.58")),
    ("instance_actions_changes_since_bad", "GET",
     S + "/os-instance-actions?changes-since=tomorrow", None, 400, ADMIN, v("2.58")),
    ("instance_action_other_server", "GET",
     C + "/servers/{unknown}/os-instance-actions/{request_id}", None, 404, ADMIN, {}),
    # ---- flavors, extra specs, access ---------------------------------------------------------
    ("flavor_show_unknown", "GET", C + "/flavors/no-such-flavor", None, 404, ADMIN, {}),
    ("flavor_show_invalid_utf8", "GET", C + "/flavors/%FF", None, 404, ADMIN, {}),
    ("flavor_show_private_member", "GET", C + "/flavors/{flavor_private}", None, 404, MEMBER,
     {}),
    ("flavors_min_ram_string", "GET", C + "/flavors?minRam=abc", None, 400, ADMIN, {}),
    ("flavors_min_ram_overflow", "GET", C + "/flavors?minRam=1e400", None, 400, ADMIN, {}),
    ("flavors_min_disk_negative", "GET", C + "/flavors?minDisk=-1", None, (200, 400), ADMIN,
     {}),
    ("flavors_limit_negative", "GET", C + "/flavors?limit=-1", None, 400, ADMIN, {}),
    ("flavors_marker_unknown", "GET", C + "/flavors?marker=no-such-flavor", None, 400, ADMIN,
     {}),
    ("flavors_sort_key_bogus", "GET", C + "/flavors/detail?sort_key=bogus", None, 400, ADMIN,
     {}),
    ("flavors_sort_dir_bogus", "GET", C + "/flavors/detail?sort_dir=up", None, 400, ADMIN, {}),
    ("flavors_is_public_bogus", "GET", C + "/flavors?is_public=maybe", None, (200, 400),
     ADMIN, {}),
    ("flavor_create_member", "POST", C + "/flavors",
     {"flavor": {"name": "bic-m", "ram": 64, "vcpus": 1, "disk": 1}}, 403, MEMBER, {}),
    ("flavor_create_ram_string", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": "big", "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_ram_negative", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": -1, "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_ram_huge", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 2 ** 40, "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_vcpus_zero", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 0, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_vcpus_float", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1.5, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_ram_1e400", "POST", C + "/flavors",
     b'{"flavor": {"name": "bic-x", "ram": 1e400, "vcpus": 1, "disk": 1}}', 400, ADMIN, {}),
    ("flavor_create_disk_negative", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1, "disk": -1}}, 400, ADMIN, {}),
    ("flavor_create_missing_ram", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_name_256", "POST", C + "/flavors",
     {"flavor": {"name": "f" * 256, "ram": 64, "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_name_control", "POST", C + "/flavors",
     {"flavor": {"name": "bic\x1bx", "ram": 64, "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_name_number", "POST", C + "/flavors",
     {"flavor": {"name": 5, "ram": 64, "vcpus": 1, "disk": 1}}, 400, ADMIN, {}),
    ("flavor_create_name_invalid_utf8", "POST", C + "/flavors",
     b'{"flavor": {"name": "bic-\xed\xa0\x80", "ram": 64, "vcpus": 1, "disk": 1}}', 400, ADMIN,
     {}),
    ("flavor_create_flavor_string", "POST", C + "/flavors", {"flavor": "m1.huge"}, 400, ADMIN,
     {}),
    ("flavor_create_id_bad_chars", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "id": "a/b", "ram": 64, "vcpus": 1, "disk": 1}}, 400,
     ADMIN, {}),
    ("flavor_create_swap_string", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1, "disk": 1, "swap": "x"}}, 400,
     ADMIN, {}),
    ("flavor_create_rxtx_negative", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1, "disk": 1, "rxtx_factor": -1}}, 400,
     ADMIN, {}),
    ("flavor_create_is_public_string", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1, "disk": 1,
                 "os-flavor-access:is_public": "maybe"}}, 400, ADMIN, {}),
    ("flavor_create_duplicate_name", "POST", C + "/flavors",
     {"flavor": {"name": "m1.tiny", "ram": 64, "vcpus": 1, "disk": 1}}, 409, ADMIN, {}),
    ("flavor_create_duplicate_id", "POST", C + "/flavors",
     {"flavor": {"name": "bic-dup-id", "id": "1", "ram": 64, "vcpus": 1, "disk": 1}}, 409,
     ADMIN, {}),
    ("flavor_create_unknown_property", "POST", C + "/flavors",
     {"flavor": {"name": "bic-x", "ram": 64, "vcpus": 1, "disk": 1, "gpus": 2}}, 400, ADMIN,
     {}),
    ("flavor_update_description_number", "PUT", C + "/flavors/{flavor}",
     {"flavor": {"description": 5}}, 400, ADMIN, v("2.55")),
    ("flavor_update_unknown", "PUT", C + "/flavors/no-such-flavor",
     {"flavor": {"description": "x"}}, 404, ADMIN, v("2.55")),
    ("flavor_update_below_2_55", "PUT", C + "/flavors/{flavor}", {"flavor": {"description": "x"}},
     (404, 405), ADMIN, {}),
    ("flavor_delete_unknown", "DELETE", C + "/flavors/no-such-flavor", None, 404, ADMIN, {}),
    ("flavor_delete_member", "DELETE", C + "/flavors/{flavor}", None, 403, MEMBER, {}),
    ("extra_specs_unknown_flavor", "GET", C + "/flavors/no-such-flavor/os-extra_specs", None,
     404, ADMIN, {}),
    ("extra_specs_post_number", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": 5}, 400, ADMIN, {}),
    ("extra_specs_post_missing_wrapper", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"k": "v"}, 400, ADMIN, {}),
    ("extra_specs_post_bad_key_chars", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": {"a$b": "v"}}, 400, ADMIN, {}),
    ("extra_specs_post_key_256", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": {"k" * 256: "v"}}, 400, ADMIN, {}),
    ("extra_specs_post_value_256", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": {"k": "v" * 256}}, 400, ADMIN, {}),
    ("extra_specs_post_value_object", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": {"k": {"a": 1}}}, 400, ADMIN, {}),
    ("extra_specs_post_member", "POST", C + "/flavors/{flavor}/os-extra_specs",
     {"extra_specs": {"k": "v"}}, 403, MEMBER, {}),
    ("extra_spec_get_missing", "GET", C + "/flavors/{flavor}/os-extra_specs/no-such-key", None,
     404, ADMIN, {}),
    ("extra_spec_put_key_mismatch", "PUT", C + "/flavors/{flavor}/os-extra_specs/k",
     {"other": "v"}, 400, ADMIN, {}),
    ("extra_spec_put_two_keys", "PUT", C + "/flavors/{flavor}/os-extra_specs/k",
     {"k": "v", "j": "w"}, 400, ADMIN, {}),
    ("extra_spec_put_list", "PUT", C + "/flavors/{flavor}/os-extra_specs/k", ["v"], 400, ADMIN,
     {}),
    ("extra_spec_delete_missing", "DELETE", C + "/flavors/{flavor}/os-extra_specs/no-such-key",
     None, 404, ADMIN, {}),
    ("flavor_access_public", "GET", C + "/flavors/{flavor}/os-flavor-access", None, 404, ADMIN,
     {}),
    ("flavor_access_unknown_flavor", "GET", C + "/flavors/no-such-flavor/os-flavor-access",
     None, 404, ADMIN, {}),
    ("flavor_access_member", "GET", C + "/flavors/{flavor_private}/os-flavor-access", None, 403,
     MEMBER, {}),
    ("flavor_action_add_public", "POST", C + "/flavors/{flavor}/action",
     {"addTenantAccess": {"tenant": "{member_pid}"}}, 409, ADMIN, {}),
    ("flavor_action_tenant_number", "POST", C + "/flavors/{flavor_private}/action",
     {"addTenantAccess": {"tenant": 5}}, 400, ADMIN, {}),
    ("flavor_action_missing_tenant", "POST", C + "/flavors/{flavor_private}/action",
     {"addTenantAccess": {}}, 400, ADMIN, {}),
    ("flavor_action_arg_string", "POST", C + "/flavors/{flavor_private}/action",
     {"addTenantAccess": "x"}, 400, ADMIN, {}),
    ("flavor_action_remove_absent", "POST", C + "/flavors/{flavor_private}/action",
     {"removeTenantAccess": {"tenant": "{unknown}"}}, 404, ADMIN, {}),
    ("flavor_action_unknown", "POST", C + "/flavors/{flavor_private}/action",
     {"shareWithEveryone": {}}, 400, ADMIN, {}),
    ("flavor_action_empty", "POST", C + "/flavors/{flavor_private}/action", {}, 400, ADMIN, {}),
    ("flavor_action_unknown_flavor", "POST", C + "/flavors/no-such-flavor/action",
     {"addTenantAccess": {"tenant": "{member_pid}"}}, 404, ADMIN, {}),
    # ---- keypairs -----------------------------------------------------------------------------
    ("keypair_name_number", "POST", C + "/os-keypairs", {"keypair": {"name": 5}}, 400, ADMIN,
     {}),
    ("keypair_name_empty", "POST", C + "/os-keypairs", {"keypair": {"name": ""}}, 400, ADMIN,
     {}),
    ("keypair_name_256", "POST", C + "/os-keypairs", {"keypair": {"name": "k" * 256}}, 400,
     ADMIN, {}),
    ("keypair_name_slash", "POST", C + "/os-keypairs", {"keypair": {"name": "a/b"}}, 400,
     ADMIN, {}),
    ("keypair_name_control", "POST", C + "/os-keypairs", {"keypair": {"name": "a\nb"}}, 400,
     ADMIN, {}),
    ("keypair_name_invalid_utf8", "POST", C + "/os-keypairs",
     b'{"keypair": {"name": "k\xc0\xaf"}}', 400, ADMIN, {}),
    ("keypair_missing_name", "POST", C + "/os-keypairs", {"keypair": {}}, 400, ADMIN, {}),
    ("keypair_not_object", "POST", C + "/os-keypairs", {"keypair": "k"}, 400, ADMIN, {}),
    ("keypair_public_key_number", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k1", "public_key": 5}}, 400, ADMIN, {}),
    ("keypair_public_key_garbage", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k2", "public_key": "garbage"}}, 400, ADMIN, {}),
    ("keypair_public_key_not_base64", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k3", "public_key": "ssh-rsa !!!notbase64!!! x@y"}}, 400,
     ADMIN, {}),
    ("keypair_public_key_truncated", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k4", "public_key": "ssh-rsa AAAAB3NzaC1yc2E= x@y"}}, 400,
     ADMIN, {}),
    ("keypair_public_key_random_blob", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k5", "public_key":
                  "ssh-rsa " + base64.b64encode(RANDOM_4K[:300]).decode() + " x@y"}}, 400,
     ADMIN, {}),
    ("keypair_public_key_type_mismatch", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k6", "public_key":
                  "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x07ssh-rsa" + b"\0" * 20).decode()}},
     400, ADMIN, {}),
    ("keypair_public_key_huge", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k7", "public_key": "ssh-rsa " + "A" * 200000}}, (400, 413),
     ADMIN, {}),
    ("keypair_type_bogus", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k8", "type": "pgp"}}, 400, ADMIN, v("2.2")),
    ("keypair_type_at_2_1", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k9", "type": "ssh"}}, 400, ADMIN, {}),
    ("keypair_x509_garbage", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k10", "type": "x509", "public_key": "-----BEGIN CERTIFICATE-----"
                  "\nnot a cert\n-----END CERTIFICATE-----\n"}}, 400, ADMIN, v("2.2")),
    ("keypair_duplicate", "POST", C + "/os-keypairs", {"keypair": {"name": "{keypair}"}}, 409,
     ADMIN, {}),
    ("keypair_user_id_member", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k11", "user_id": "someone-else"}}, (400, 403), MEMBER,
     v("2.10")),
    ("keypair_extra_property", "POST", C + "/os-keypairs",
     {"keypair": {"name": "bic-k12", "color": "red"}}, 400, ADMIN, {}),
    ("keypair_show_unknown", "GET", C + "/os-keypairs/no-such-key", None, 404, ADMIN, {}),
    ("keypair_show_invalid_utf8", "GET", C + "/os-keypairs/%FF%FE", None, 404, ADMIN, {}),
    ("keypair_show_other_user", "GET", C + "/os-keypairs/{keypair}", None, 404, MEMBER, {}),
    ("keypair_delete_unknown", "DELETE", C + "/os-keypairs/no-such-key", None, 404, ADMIN, {}),
    ("keypairs_limit_negative", "GET", C + "/os-keypairs?limit=-1", None, 400, ADMIN,
     v("2.35")),
    ("keypairs_limit_string", "GET", C + "/os-keypairs?limit=x", None, 400, ADMIN, v("2.35")),
    ("keypairs_limit_overflow", "GET", C + "/os-keypairs?limit=1e400", None, 400, ADMIN,
     v("2.35")),
    ("keypairs_marker_unknown", "GET", C + "/os-keypairs?marker=no-such-key", None, 400, ADMIN,
     v("2.35")),
    # ---- server groups ------------------------------------------------------------------------
    ("group_policy_bogus", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policies": ["bogus"]}}, 400, ADMIN, {}),
    ("group_policies_string", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policies": "affinity"}}, 400, ADMIN, {}),
    ("group_two_policies", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policies": ["affinity", "anti-affinity"]}}, 400,
     ADMIN, {}),
    ("group_missing_name", "POST", C + "/os-server-groups",
     {"server_group": {"policies": ["affinity"]}}, 400, ADMIN, {}),
    ("group_name_256", "POST", C + "/os-server-groups",
     {"server_group": {"name": "g" * 256, "policies": ["affinity"]}}, 400, ADMIN, {}),
    ("group_name_number", "POST", C + "/os-server-groups",
     {"server_group": {"name": 5, "policies": ["affinity"]}}, 400, ADMIN, {}),
    ("group_name_control", "POST", C + "/os-server-groups",
     {"server_group": {"name": "g\x00h", "policies": ["affinity"]}}, 400, ADMIN, {}),
    ("group_name_invalid_utf8", "POST", C + "/os-server-groups",
     b'{"server_group": {"name": "g\xff", "policies": ["affinity"]}}', 400, ADMIN, {}),
    ("group_not_object", "POST", C + "/os-server-groups", {"server_group": ["x"]}, 400, ADMIN,
     {}),
    ("groups_marker_huge", "GET", C + "/os-server-groups?limit=" + "9" * 40, None, (200, 400),
     ADMIN, {}),
    ("group_policy_2_64_bogus", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "bogus"}}, 400, ADMIN, v("2.64")),
    ("group_policies_at_2_64", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policies": ["affinity"]}}, 400, ADMIN, v("2.64")),
    ("group_rules_string", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "anti-affinity", "rules": "x"}}, 400, ADMIN,
     v("2.64")),
    ("group_rules_max_string", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "anti-affinity",
                       "rules": {"max_server_per_host": "two"}}}, 400, ADMIN, v("2.64")),
    ("group_rules_max_zero", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "anti-affinity",
                       "rules": {"max_server_per_host": 0}}}, 400, ADMIN, v("2.64")),
    ("group_rules_max_huge", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "anti-affinity",
                       "rules": {"max_server_per_host": 10 ** 30}}}, 400, ADMIN, v("2.64")),
    ("group_rules_with_affinity", "POST", C + "/os-server-groups",
     {"server_group": {"name": "bic-g", "policy": "affinity",
                       "rules": {"max_server_per_host": 2}}}, 400, ADMIN, v("2.64")),
    ("group_show_unknown", "GET", C + "/os-server-groups/{unknown}", None, 404, ADMIN, {}),
    ("group_show_malformed", "GET", C + "/os-server-groups/not-a-uuid", None, 404, ADMIN, {}),
    ("group_show_other_project", "GET", C + "/os-server-groups/{group}", None, 404, MEMBER, {}),
    ("group_delete_unknown", "DELETE", C + "/os-server-groups/{unknown}", None, 404, ADMIN, {}),
    ("group_delete_other_project", "DELETE", C + "/os-server-groups/{group}", None, 404, MEMBER,
     {}),
    ("groups_limit_negative", "GET", C + "/os-server-groups?limit=-1", None, 400, ADMIN, {}),
    ("groups_offset_string", "GET", C + "/os-server-groups?offset=x", None, 400, ADMIN, {}),
    # ---- quota sets and classes, limits -------------------------------------------------------
    ("quota_put_string", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"instances": "many"}}, 400, ADMIN, {}),
    ("quota_put_negative", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"instances": -5}}, 400, ADMIN, {}),
    ("quota_put_huge", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"cores": 2 ** 63}}, 400, ADMIN, {}),
    ("quota_put_float", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"ram": 1.5}}, 400, ADMIN, {}),
    ("quota_put_bool", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"ram": True}}, 400, ADMIN, {}),
    ("quota_put_1e400", "PUT", C + "/os-quota-sets/{member_pid}",
     b'{"quota_set": {"instances": 1e400}}', 400, ADMIN, {}),
    ("quota_put_unknown_key", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"gpus": 1}}, 400, ADMIN, {}),
    ("quota_put_not_object", "PUT", C + "/os-quota-sets/{member_pid}", {"quota_set": 5}, 400,
     ADMIN, {}),
    ("quota_put_missing_wrapper", "PUT", C + "/os-quota-sets/{member_pid}", {"instances": 5},
     400, ADMIN, {}),
    ("quota_put_force_string", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"instances": 5, "force": "maybe"}}, 400, ADMIN, {}),
    ("quota_put_removed_key_2_36", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"floating_ips": 5}}, 400, ADMIN, v("2.36")),
    ("quota_put_member", "PUT", C + "/os-quota-sets/{member_pid}",
     {"quota_set": {"instances": 100}}, 403, MEMBER, {}),
    ("quota_delete_member", "DELETE", C + "/os-quota-sets/{member_pid}", None, 403, MEMBER, {}),
    ("quota_get_other_project_member", "GET", C + "/os-quota-sets/{admin_pid}", None, 403,
     MEMBER, {}),
    ("quota_get_invalid_utf8", "GET", C + "/os-quota-sets/%FF", None, (400, 404), ADMIN, {}),
    ("quota_class_put_negative", "PUT", C + "/os-quota-class-sets/default",
     {"quota_class_set": {"instances": -5}}, 400, ADMIN, {}),
    ("quota_class_put_string", "PUT", C + "/os-quota-class-sets/default",
     {"quota_class_set": {"cores": "x"}}, 400, ADMIN, {}),
    ("quota_class_put_huge", "PUT", C + "/os-quota-class-sets/default",
     {"quota_class_set": {"ram": 10 ** 20}}, 400, ADMIN, {}),
    ("quota_class_put_list", "PUT", C + "/os-quota-class-sets/default",
     {"quota_class_set": []}, 400, ADMIN, {}),
    ("quota_class_put_unknown_key", "PUT", C + "/os-quota-class-sets/default",
     {"quota_class_set": {"bogus": 1}}, 400, ADMIN, {}),
    ("quota_class_name_256", "PUT", C + "/os-quota-class-sets/" + "c" * 256,
     {"quota_class_set": {"instances": 5}}, 400, ADMIN, {}),
    ("quota_class_member", "GET", C + "/os-quota-class-sets/default", None, 403, MEMBER, {}),
    ("limits_bad_version", "GET", C + "/limits", None, 406, ADMIN, v("2.999")),
    ("limits_tenant_member", "GET", C + "/limits?tenant_id={admin_pid}", None, (200, 403),
     MEMBER, {}),
    ("limits_query_invalid_utf8", "GET", C + "/limits?tenant_id=%FF", None, (200, 400), ADMIN,
     {}),
    # ---- availability zones, hypervisors, services --------------------------------------------
    ("az_detail_member", "GET", C + "/os-availability-zone/detail", None, 403, MEMBER, {}),
    ("az_bad_version", "GET", C + "/os-availability-zone", None, 400, ADMIN, v("x.y")),
    ("hypervisors_member", "GET", C + "/os-hypervisors", None, 403, MEMBER, {}),
    ("hypervisor_show_unknown", "GET", C + "/os-hypervisors/999999", None, (400, 404), ADMIN,
     {}),
    ("hypervisor_show_unknown_uuid", "GET", C + "/os-hypervisors/{unknown}", None, 404, ADMIN,
     v("2.53")),
    ("hypervisor_show_not_uuid_2_53", "GET", C + "/os-hypervisors/42", None, (400, 404), ADMIN,
     v("2.53")),
    ("hypervisor_search_nothing", "GET", C + "/os-hypervisors/no-such-host/search", None, 404,
     ADMIN, {}),
    ("hypervisor_servers_nothing", "GET", C + "/os-hypervisors/no-such-host/servers", None, 404,
     ADMIN, {}),
    ("hypervisors_limit_negative", "GET", C + "/os-hypervisors/detail?limit=-1", None, 400,
     ADMIN, v("2.33")),
    ("hypervisors_marker_unknown", "GET", C + "/os-hypervisors?marker={unknown}", None, 400,
     ADMIN, v("2.53")),
    ("hypervisor_statistics_member", "GET", C + "/os-hypervisors/statistics", None, 403, MEMBER,
     {}),
    ("services_member", "GET", C + "/os-services", None, 403, MEMBER, {}),
    ("services_enable_host_number", "PUT", C + "/os-services/enable",
     {"host": 5, "binary": "nova-compute"}, 400, ADMIN, {}),
    ("services_enable_unknown_host", "PUT", C + "/os-services/enable",
     {"host": "no-such-host", "binary": "nova-compute"}, 404, ADMIN, {}),
    ("services_enable_missing_binary", "PUT", C + "/os-services/enable", {"host": "h"}, 400,
     ADMIN, {}),
    ("services_disable_reason_missing", "PUT", C + "/os-services/disable-log-reason",
     {"host": "no-such-host", "binary": "nova-compute"}, (400, 404), ADMIN, {}),
    ("services_disable_reason_256", "PUT", C + "/os-services/disable-log-reason",
     {"host": "h", "binary": "nova-compute", "disabled_reason": "r" * 256}, 400, ADMIN, {}),
    ("services_update_unknown", "PUT", C + "/os-services/{unknown}", {"status": "disabled"},
     404, ADMIN, v("2.53")),
    ("services_update_status_bogus", "PUT", C + "/os-services/{unknown}", {"status": "asleep"},
     400, ADMIN, v("2.53")),
    ("services_update_forced_down_string", "PUT", C + "/os-services/{unknown}",
     {"forced_down": "yes"}, 400, ADMIN, v("2.53")),
    ("services_update_member", "PUT", C + "/os-services/{unknown}", {"status": "disabled"},
     403, MEMBER, v("2.53")),
    ("services_host_filter_invalid_utf8", "GET", C + "/os-services?host=%FF", None, 400, ADMIN,
     {}),
    # ---- admin routes being added (router 404 accepted while absent: PENDING_ROUTES) ----------
    ("aggregates_member", "GET", C + "/os-aggregates", None, 403, MEMBER, {}),
    ("aggregate_create_name_number", "POST", C + "/os-aggregates", {"aggregate": {"name": 5}},
     400, ADMIN, {}),
    ("aggregate_create_missing_name", "POST", C + "/os-aggregates", {"aggregate": {}}, 400,
     ADMIN, {}),
    ("aggregate_create_name_256", "POST", C + "/os-aggregates",
     {"aggregate": {"name": "a" * 256}}, 400, ADMIN, {}),
    ("aggregate_create_not_json", "POST", C + "/os-aggregates", b"[", 400, ADMIN, {}),
    ("aggregate_show_unknown", "GET", C + "/os-aggregates/999999", None, 404, ADMIN, {}),
    ("aggregate_show_not_int", "GET", C + "/os-aggregates/abc", None, (400, 404), ADMIN, {}),
    ("aggregate_action_unknown", "POST", C + "/os-aggregates/999999/action",
     {"add_host": {"host": "no-such-host"}}, 404, ADMIN, {}),
    ("aggregate_action_metadata_number", "POST", C + "/os-aggregates/999999/action",
     {"set_metadata": {"metadata": 5}}, 400, ADMIN, {}),
    ("aggregate_update_name_number", "PUT", C + "/os-aggregates/999999",
     {"aggregate": {"name": 5}}, 400, ADMIN, {}),
    ("aggregate_create_az_number", "POST", C + "/os-aggregates",
     {"aggregate": {"name": "bic-agg", "availability_zone": 5}}, 400, ADMIN, {}),
    ("aggregate_create_member", "POST", C + "/os-aggregates", {"aggregate": {"name": "bic-m"}},
     403, MEMBER, {}),
    ("aggregate_delete_unknown", "DELETE", C + "/os-aggregates/999999", None, 404, ADMIN, {}),
    ("aggregate_action_unknown_name", "POST", C + "/os-aggregates/999999/action",
     {"fly": {}}, (400, 404), ADMIN, {}),
    ("hosts_update_status_bogus", "PUT", C + "/os-hosts/no-such-host", {"status": "bogus"},
     400, ADMIN, {}),
    ("hosts_zone_invalid_utf8", "GET", C + "/os-hosts?zone=%FF", None, (200, 400), ADMIN, {}),
    ("server_password_delete_unknown", "DELETE", C + "/servers/{unknown}/os-server-password",
     None, 404, ADMIN, {}),
    ("server_password_other_project", "GET", S + "/os-server-password", None, 404, MEMBER, {}),
    ("hosts_show_unknown", "GET", C + "/os-hosts/no-such-host", None, 404, ADMIN, {}),
    ("hosts_member", "GET", C + "/os-hosts", None, 403, MEMBER, {}),
    ("migrations_member", "GET", C + "/os-migrations", None, 403, MEMBER, {}),
    ("migrations_limit_negative", "GET", C + "/os-migrations?limit=-1", None, 400, ADMIN,
     v("2.59")),
    ("migrations_changes_since_bad", "GET", C + "/os-migrations?changes-since=never", None, 400,
     ADMIN, v("2.59")),
    ("migrations_marker_unknown", "GET", C + "/os-migrations?marker={unknown}", None, 400, ADMIN,
     v("2.59")),
    ("usage_start_garbage", "GET", C + "/os-simple-tenant-usage?start=yesterday", None, 400,
     ADMIN, {}),
    ("usage_end_before_start", "GET",
     C + "/os-simple-tenant-usage?start=2026-02-01T00:00:00&end=2026-01-01T00:00:00", None,
     (200, 400), ADMIN, {}),
    ("usage_member_other_project", "GET", C + "/os-simple-tenant-usage/{admin_pid}", None, 403,
     MEMBER, {}),
    ("usage_limit_negative", "GET", C + "/os-simple-tenant-usage?limit=-1", None, 400, ADMIN,
     v("2.40")),
    ("image_proxy_unknown", "GET", C + "/images/{unknown}", None, 404, ADMIN, {}),
    ("image_proxy_limit_negative", "GET", C + "/images?limit=-1", None, 400, ADMIN, {}),
    ("image_proxy_above_2_35", "GET", C + "/images", None, 404, ADMIN, v("2.36")),
    ("image_proxy_metadata_number", "POST", C + "/images/{img}/metadata", {"metadata": 5}, 400,
     ADMIN, {}),
    ("server_password_unknown", "GET", C + "/servers/{unknown}/os-server-password", None, 404,
     ADMIN, {}),
    ("diagnostics_unknown", "GET", C + "/servers/{unknown}/diagnostics", None, 404, ADMIN, {}),
    ("diagnostics_member", "GET", S + "/diagnostics", None, (403, 404), MEMBER, {}),
    ("external_events_number", "POST", C + "/os-server-external-events", {"events": 5}, 400,
     ADMIN, {}),
    ("external_events_bad_name", "POST", C + "/os-server-external-events",
     {"events": [{"name": "bogus", "server_uuid": "{server}"}]}, 400, ADMIN, {}),
    ("external_events_member", "POST", C + "/os-server-external-events",
     {"events": [{"name": "network-changed", "server_uuid": "{server}"}]}, 403, MEMBER, {}),
    ("hypervisor_uptime_unknown", "GET", C + "/os-hypervisors/999999/uptime", None, (400, 404),
     ADMIN, {}),
    ("extension_unknown", "GET", C + "/extensions/no-such-extension", None, 404, ADMIN, {}),
    ("aggregate_create_name_control", "POST", C + "/os-aggregates",
     {"aggregate": {"name": "a\x01b"}}, 400, ADMIN, {}),
    ("aggregate_create_name_invalid_utf8", "POST", C + "/os-aggregates",
     b'{"aggregate": {"name": "a\xff"}}', 400, ADMIN, {}),
    ("aggregate_create_not_object", "POST", C + "/os-aggregates", {"aggregate": "a"}, 400, ADMIN,
     {}),
    ("aggregate_create_unknown_property", "POST", C + "/os-aggregates",
     {"aggregate": {"name": "bic-agg-x", "hosts": []}}, 400, ADMIN, {}),
    ("aggregate_show_invalid_utf8", "GET", C + "/os-aggregates/%FF", None, (400, 404), ADMIN,
     {}),
    ("aggregate_show_huge_id", "GET", C + "/os-aggregates/" + "9" * 40, None, (400, 404), ADMIN,
     {}),
    ("aggregate_action_empty", "POST", C + "/os-aggregates/999999/action", {}, 400, ADMIN,
     {}),
    ("aggregate_action_host_number", "POST", C + "/os-aggregates/999999/action",
     {"add_host": {"host": 5}}, 400, ADMIN, {}),
    ("hosts_power_action_unknown", "GET", C + "/os-hosts/no-such-host/reboot", None,
     (400, 404, 501), ADMIN, {}),
    ("hosts_update_member", "PUT", C + "/os-hosts/no-such-host", {"status": "disable"}, 403,
     MEMBER, {}),
    ("hosts_update_maintenance_bogus", "PUT", C + "/os-hosts/no-such-host",
     {"maintenance_mode": "maybe"}, 400, ADMIN, {}),
    ("hosts_update_empty", "PUT", C + "/os-hosts/no-such-host", {}, 400, ADMIN, {}),
    ("hosts_above_2_42", "GET", C + "/os-hosts", None, 404, ADMIN, v("2.43")),
    ("server_migrations_unknown_server", "GET", C + "/servers/{unknown}/migrations", None, 404,
     ADMIN, {}),
    ("server_migration_unknown", "GET", S + "/migrations/999999", None, 404, ADMIN,
     v("2.23")),
    ("server_migration_not_int", "GET", S + "/migrations/abc", None, (400, 404, 409), ADMIN,
     v("2.23")),
    ("server_migrations_member", "GET", S + "/migrations", None, (403, 404), MEMBER, v("2.23")),
    ("migrations_hidden_bogus", "GET", C + "/os-migrations?hidden=maybe", None, (200, 400),
     ADMIN, {}),
    ("migrations_instance_uuid_invalid_utf8", "GET", C + "/os-migrations?instance_uuid=%FF",
     None, 400, ADMIN, {}),
    ("usage_audit_log_member", "GET", C + "/os-instance_usage_audit_log", None, 403, MEMBER, {}),
    ("usage_audit_log_bad_time", "GET", C + "/os-instance_usage_audit_log/not-a-time", None,
     (400, 404), ADMIN, {}),
    ("usage_end_garbage", "GET", C + "/os-simple-tenant-usage?end=2026-99-99", None, 400, ADMIN,
     {}),
    ("usage_detailed_bogus", "GET", C + "/os-simple-tenant-usage?detailed=maybe", None,
     (200, 400), ADMIN, {}),
    ("usage_marker_unknown", "GET", C + "/os-simple-tenant-usage?marker={unknown}", None, 400,
     ADMIN, v("2.40")),
    ("usage_tenant_invalid_utf8", "GET", C + "/os-simple-tenant-usage/%FF", None, (400, 404),
     ADMIN, {}),
    ("image_proxy_show_malformed", "GET", C + "/images/not-a-uuid", None, 404, ADMIN, {}),
    ("image_proxy_delete_unknown", "DELETE", C + "/images/{unknown}", None, 404, ADMIN, {}),
    ("image_proxy_delete_protected", "DELETE", C + "/images/{img_protected}", None, (403, 409),
     ADMIN, {}),
    ("image_proxy_delete_member", "DELETE", C + "/images/{img_shared}", None, (403, 404), MEMBER,
     {}),
    ("image_proxy_metadata_value_number", "POST", C + "/images/{img}/metadata",
     {"metadata": {"k": 5}}, 400, ADMIN, {}),
    ("image_proxy_metadata_put_list", "PUT", C + "/images/{img}/metadata", {"metadata": []},
     400, ADMIN, {}),
    ("image_proxy_metadata_key_mismatch", "PUT", C + "/images/{img}/metadata/k",
     {"meta": {"other": "v"}}, 400, ADMIN, {}),
    ("image_proxy_metadata_item_missing", "GET", C + "/images/{img}/metadata/no-such-key", None,
     404, ADMIN, {}),
    ("image_proxy_metadata_delete_missing", "DELETE", C + "/images/{img}/metadata/no-such-key",
     None, 404, ADMIN, {}),
    ("image_proxy_metadata_unknown_image", "GET", C + "/images/{unknown}/metadata", None, 404,
     ADMIN, {}),
    ("image_proxy_metadata_member", "POST", C + "/images/{img_shared}/metadata",
     {"metadata": {"k": "v"}}, (403, 404), MEMBER, {}),
    ("image_proxy_marker_unknown", "GET", C + "/images?marker={unknown}", None, 400, ADMIN, {}),
    ("image_proxy_min_ram_string", "GET", C + "/images/detail?minRam=abc", None, (200, 400),
     ADMIN, {}),
    ("server_password_delete_member", "DELETE", S + "/os-server-password", None, (403, 404),
     MEMBER, {}),
    ("diagnostics_error_server", "GET", S + "/diagnostics", None, (200, 409), ADMIN, {}),
    ("external_events_empty_list", "POST", C + "/os-server-external-events", {"events": []}, 400,
     ADMIN, {}),
    ("external_events_unknown_server", "POST", C + "/os-server-external-events",
     {"events": [{"name": "network-changed", "server_uuid": "{unknown}"}]}, (207, 400, 404),
     ADMIN, {}),
    ("external_events_status_bogus", "POST", C + "/os-server-external-events",
     {"events": [{"name": "network-changed", "server_uuid": "{server}", "status": "meh"}]}, 400,
     ADMIN, {}),
    ("external_events_not_json", "POST", C + "/os-server-external-events", b"events", 400, ADMIN,
     {}),
    # ---- unknown routes and oversize requests under /compute ----------------------------------
    ("compute_header_too_large", "GET", C + "/servers", None, 431, ADMIN, {"X-Big": "a" * 70000}),
    ("compute_path_too_long", "GET", C + "/servers/" + "x" * 70000, None, (414, 431), ADMIN, {}),
    ("compute_body_too_large", "POST", C + "/servers",
     b'{"server": {"name": "' + b"x" * (2 << 20) + b'"}}', 413, ADMIN, {}),
    ("compute_query_too_long", "GET", C + "/flavors?" + "a=b&" * 20000, None, (414, 431), ADMIN,
     {}),
    ("list_name_regex_too_complex", "GET",
     C + "/servers?name=%28%28a%7B99%7D%29%7B99%7D%29%7B99%7D", None, 400, ADMIN, {}),
    ("list_name_regex_nested_deep", "GET", C + "/servers?name=" + "%28" * 40 + "a" + "%29" * 40,
     None, 400, ADMIN, {}),
    ("list_name_regex_unbalanced", "GET", C + "/servers?name=%28%28%28", None, 400, ADMIN, {}),
    ("list_ip_regex_bad", "GET", C + "/servers?ip=*", None, 400, ADMIN, {}),
    ("list_name_regex_backtracking", "GET",
     C + "/servers/detail?name=%28a%2B%29%2B%24&limit=1000", None, 200, ADMIN, {}),
    ("compute_unknown_collection", "GET", C + "/no-such-collection", None, 404, ADMIN, {}),
    ("compute_unknown_subroute", "GET", S + "/no-such-thing", None, 404, ADMIN, {}),
    ("compute_unknown_version", "GET", "/compute/v9.9/servers", None, 404, ADMIN, {}),
    # ==== Glance ===============================================================================
    ("img_create_not_json", "POST", I + "/images", b"notjson", 400, ADMIN, {}),
    ("img_create_array", "POST", I + "/images", [1], 400, ADMIN, {}),
    ("img_create_null", "POST", I + "/images", b"null", 400, ADMIN, {}),
    ("img_create_nested", "POST", I + "/images", b'{"name": ' + b"[" * 100000, 400, ADMIN, {}),
    ("img_create_name_number", "POST", I + "/images", {"name": 5}, 400, ADMIN, {}),
    ("img_create_name_256", "POST", I + "/images", {"name": "n" * 256}, 400, ADMIN, {}),
    ("img_create_name_invalid_utf8", "POST", I + "/images", b'{"name": "\xff\xfe"}', 400,
     ADMIN, {}),
    ("img_create_disk_format_bogus", "POST", I + "/images", {"disk_format": "floppy"}, 400,
     ADMIN, {}),
    ("img_create_disk_format_number", "POST", I + "/images", {"disk_format": 5}, 400, ADMIN,
     {}),
    ("img_create_container_format_bogus", "POST", I + "/images", {"container_format": "crate"},
     400, ADMIN, {}),
    ("img_create_visibility_bogus", "POST", I + "/images", {"visibility": "everyone"}, 400,
     ADMIN, {}),
    ("img_create_min_ram_negative", "POST", I + "/images", {"min_ram": -1}, 400, ADMIN, {}),
    ("img_create_min_disk_string", "POST", I + "/images", {"min_disk": "x"}, 400, ADMIN, {}),
    ("img_create_min_disk_huge", "POST", I + "/images", {"min_disk": 2 ** 70}, 400, ADMIN, {}),
    ("img_create_protected_string", "POST", I + "/images", {"protected": "yes"}, 400, ADMIN,
     {}),
    ("img_create_os_hidden_string", "POST", I + "/images", {"os_hidden": "no"}, 400, ADMIN, {}),
    ("img_create_tags_string", "POST", I + "/images", {"tags": "a"}, 400, ADMIN, {}),
    ("img_create_tags_number_item", "POST", I + "/images", {"tags": [5]}, 400, ADMIN, {}),
    ("img_create_tag_too_long", "POST", I + "/images", {"tags": ["t" * 256]}, 400, ADMIN, {}),
    ("img_create_id_malformed", "POST", I + "/images", {"id": "not-a-uuid"}, 400, ADMIN, {}),
    ("img_create_id_duplicate", "POST", I + "/images", {"id": "{img}"}, 409, ADMIN, {}),
    ("img_create_status_readonly", "POST", I + "/images", {"status": "active"}, 403, ADMIN, {}),
    ("img_create_size_readonly", "POST", I + "/images", {"size": 5}, 403, ADMIN, {}),
    ("img_create_property_object", "POST", I + "/images", {"custom": {"a": 1}}, 400, ADMIN, {}),
    ("img_create_property_key_256", "POST", I + "/images", {"k" * 256: "v"}, 400, ADMIN, {}),
    ("img_create_public_member", "POST", I + "/images", {"visibility": "public"}, 403, MEMBER,
     {}),
    # Glance's JSON deserializer does not look at the Content-Type of a create.
    ("img_create_text_plain", "POST", I + "/images", {"name": "x"}, (201, 400, 415), ADMIN,
     {"Content-Type": "text/plain"}),
    ("img_create_no_token", "POST", I + "/images", {"name": "x"}, 401, NOAUTH, {}),
    ("img_show_unknown", "GET", I + "/images/{unknown}", None, 404, ADMIN, {}),
    ("img_show_malformed", "GET", I + "/images/not-a-uuid", None, 404, ADMIN, {}),
    ("img_show_invalid_utf8", "GET", I + "/images/%FF%FE", None, 404, ADMIN, {}),
    ("img_show_private_other", "GET", I + "/images/{img_private}", None, 404, MEMBER, {}),
    ("img_list_sort_key_bogus", "GET", I + "/images?sort_key=bogus", None, 400, ADMIN, {}),
    ("img_list_sort_dir_bogus", "GET", I + "/images?sort_dir=sideways", None, 400, ADMIN, {}),
    ("img_list_sort_new_bogus_dir", "GET", I + "/images?sort=name:sideways", None, 400, ADMIN,
     {}),
    ("img_list_sort_both_syntaxes", "GET", I + "/images?sort=name&sort_key=name", None, 400,
     ADMIN, {}),
    ("img_list_limit_negative", "GET", I + "/images?limit=-1", None, 400, ADMIN, {}),
    ("img_list_limit_string", "GET", I + "/images?limit=abc", None, 400, ADMIN, {}),
    ("img_list_limit_huge", "GET", I + "/images?limit=99999999999999999999999", None,
     (200, 400), ADMIN, {}),
    ("img_list_marker_unknown", "GET", I + "/images?marker={unknown}", None, 400, ADMIN, {}),
    ("img_list_marker_malformed", "GET", I + "/images?marker=" + "m" * 3000, None, 400, ADMIN,
     {}),
    ("img_list_visibility_bogus", "GET", I + "/images?visibility=everyone", None, 400, ADMIN,
     {}),
    ("img_list_member_status_bogus", "GET", I + "/images?member_status=maybe", None, 400,
     ADMIN, {}),
    ("img_list_size_min_string", "GET", I + "/images?size_min=big", None, 400, ADMIN, {}),
    ("img_list_created_at_garbage", "GET", I + "/images?created_at=gt:yesterday", None, 400,
     ADMIN, {}),
    ("img_list_os_hidden_bogus", "GET", I + "/images?os_hidden=maybe", None, 400, ADMIN, {}),
    ("img_list_query_invalid_utf8", "GET", I + "/images?name=%FF%FE", None, 400, ADMIN, {}),
    ("img_patch_json_content_type", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/name", "value": "x"}], 415, ADMIN, {}),
    ("img_patch_not_list", "PATCH", I + "/images/{img}", {"op": "replace"}, 400, ADMIN,
     PATCH_CT),
    ("img_patch_not_json", "PATCH", I + "/images/{img}", b"[{", 400, ADMIN, PATCH_CT),
    ("img_patch_op_bogus", "PATCH", I + "/images/{img}",
     [{"op": "bogus", "path": "/name", "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_op_missing", "PATCH", I + "/images/{img}", [{"path": "/name", "value": "x"}],
     400, ADMIN, PATCH_CT),
    ("img_patch_item_not_object", "PATCH", I + "/images/{img}", ["replace"], 400, ADMIN,
     PATCH_CT),
    ("img_patch_path_root", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/", "value": "x"}], (400, 403), ADMIN, PATCH_CT),
    ("img_patch_path_no_slash", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "name", "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_path_nested", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/name/first", "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_path_number", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": 5, "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_value_missing", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/name"}], 400, ADMIN, PATCH_CT),
    ("img_patch_name_number", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/name", "value": 5}], 400, ADMIN, PATCH_CT),
    ("img_patch_min_ram_negative", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/min_ram", "value": -1}], 400, ADMIN, PATCH_CT),
    ("img_patch_visibility_bogus", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/visibility", "value": "world"}], 400, ADMIN, PATCH_CT),
    ("img_patch_tags_string", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/tags", "value": "a"}], 400, ADMIN, PATCH_CT),
    ("img_patch_id_readonly", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/id", "value": "{unknown}"}], 403, ADMIN, PATCH_CT),
    ("img_patch_status_readonly", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/status", "value": "queued"}], 403, ADMIN, PATCH_CT),
    ("img_patch_disk_format_active", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/disk_format", "value": "qcow2"}], (400, 403, 409), ADMIN,
     PATCH_CT),
    ("img_patch_remove_absent", "PATCH", I + "/images/{img}",
     [{"op": "remove", "path": "/no_such_property"}], (400, 409), ADMIN, PATCH_CT),
    ("img_patch_remove_base", "PATCH", I + "/images/{img}",
     [{"op": "remove", "path": "/name"}], 403, ADMIN, PATCH_CT),
    ("img_patch_property_object", "PATCH", I + "/images/{img}",
     [{"op": "add", "path": "/custom", "value": {"a": 1}}], 400, ADMIN, PATCH_CT),
    ("img_patch_unknown_image", "PATCH", I + "/images/{unknown}",
     [{"op": "replace", "path": "/name", "value": "x"}], 404, ADMIN, PATCH_CT),
    ("img_patch_other_project", "PATCH", I + "/images/{img_private}",
     [{"op": "replace", "path": "/name", "value": "x"}], 404, MEMBER, PATCH_CT),
    ("img_patch_nested_json", "PATCH", I + "/images/{img}", b"[" * 100000, 400, ADMIN,
     PATCH_CT),
    ("img_delete_unknown", "DELETE", I + "/images/{unknown}", None, 404, ADMIN, {}),
    ("img_delete_collection", "DELETE", I + "/images", None, 405, ADMIN, {}),
    ("img_show_trailing_slash", "GET", I + "/images/", None, 404, ADMIN, {}),
    ("img_delete_protected", "DELETE", I + "/images/{img_protected}", None, 403, ADMIN, {}),
    ("img_delete_other_project", "DELETE", I + "/images/{img_private}", None, 404, MEMBER, {}),
    ("img_upload_unknown", "PUT", I + "/images/{unknown}/file", b"data", 404, ADMIN, OCTET),
    ("img_upload_twice", "PUT", I + "/images/{img}/file", b"data", 409, ADMIN, OCTET),
    ("img_upload_json_content_type", "PUT", I + "/images/{img_queued}/file", b"{}", (400, 415),
     ADMIN, {}),
    ("img_upload_random_as_qcow2", "PUT", I + "/images/{img_lie_qcow2}/file", RANDOM_4K, 400,
     ADMIN, OCTET),
    ("img_upload_qcow2_as_raw", "PUT", I + "/images/{img_lie_raw}/file", qcow2_header(), 400,
     ADMIN, OCTET),
    ("img_upload_not_tar_as_docker", "PUT", I + "/images/{img_lie_docker}/file",
     b"not a tar archive\n" * 200, 400, ADMIN, OCTET),
    ("img_upload_random_as_iso", "PUT", I + "/images/{img_lie_iso}/file", RANDOM_4K, 400,
     ADMIN, OCTET),
    ("img_upload_vmdk_descriptor_as_raw", "PUT", I + "/images/{img_lie_descriptor}/file",
     VMDK_DESCRIPTOR, 400, ADMIN, OCTET),
    ("img_upload_other_project", "PUT", I + "/images/{img_private}/file", b"data", 404, MEMBER,
     OCTET),
    ("img_upload_over_limit", "PUT", I + "/images/{img_big}/file",
     b"\0" * (MAX_IMAGE_BYTES + 65536), 413, ADMIN, OCTET),
    ("img_upload_by_member_of_shared", "PUT", I + "/images/{img_shared}/file", b"data",
     (403, 409), MEMBER, OCTET),
    ("img_download_queued", "GET", I + "/images/{img_queued}/file", None, 204, ADMIN, {}),
    ("img_download_deactivated_member", "GET", I + "/images/{img_deactivated}/file", None, 403,
     MEMBER, {}),
    ("img_reactivate_member", "POST", I + "/images/{img_deactivated}/actions/reactivate", None,
     403, MEMBER, {}),
    ("img_patch_by_member_of_shared", "PATCH", I + "/images/{img_shared}",
     [{"op": "replace", "path": "/name", "value": "mine"}], 403, MEMBER, PATCH_CT),
    ("img_delete_by_member_of_shared", "DELETE", I + "/images/{img_shared}", None, 403, MEMBER,
     {}),
    ("img_tag_by_member_of_shared", "PUT", I + "/images/{img_shared}/tags/x", None, 403, MEMBER,
     {}),
    ("img_member_delete_by_member", "DELETE", I + "/images/{img_shared}/members/{member_pid}",
     None, 403, MEMBER, {}),
    ("img_member_status_for_other", "PUT", I + "/images/{img_shared}/members/{admin_pid}",
     {"status": "accepted"}, (403, 404), MEMBER, {}),
    ("img_create_too_many_properties", "POST", I + "/images",
     {"p%d" % i: "v" for i in range(1000)}, 413, ADMIN, {}),
    ("img_create_too_many_tags", "POST", I + "/images", {"tags": ["t%d" % i for i in range(1000)]},
     413, ADMIN, {}),
    ("img_patch_too_many_properties", "PATCH", I + "/images/{img_tagged}",
     [{"op": "add", "path": "/p%d" % i, "value": "v"} for i in range(1000)], 413, ADMIN,
     PATCH_CT),
    ("img_patch_op_test", "PATCH", I + "/images/{img}",
     [{"op": "test", "path": "/name", "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_bad_pointer_escape", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/~2name", "value": "x"}], 400, ADMIN, PATCH_CT),
    ("img_patch_locations_reserved", "PATCH", I + "/images/{img}",
     [{"op": "replace", "path": "/locations", "value": []}], 403, ADMIN, PATCH_CT),
    ("img_patch_tag_too_long", "PATCH", I + "/images/{img_tagged}",
     [{"op": "add", "path": "/tags/-", "value": "t" * 300}], 400, ADMIN, PATCH_CT),
    ("img_download_unknown", "GET", I + "/images/{unknown}/file", None, 404, ADMIN, {}),
    ("img_download_other_project", "GET", I + "/images/{img_private}/file", None, 404, MEMBER,
     {}),
    ("img_download_bad_range", "GET", I + "/images/{img}/file", None, (200, 206, 400, 416),
     ADMIN, {"Range": "bytes=9999999-1"}),
    ("img_deactivate_unknown", "POST", I + "/images/{unknown}/actions/deactivate", None, 404,
     ADMIN, {}),
    ("img_deactivate_queued", "POST", I + "/images/{img_queued}/actions/deactivate", None,
     (400, 403, 409), ADMIN, {}),
    ("img_deactivate_member", "POST", I + "/images/{img}/actions/deactivate", None, (403, 404),
     MEMBER, {}),
    ("img_reactivate_unknown", "POST", I + "/images/{unknown}/actions/reactivate", None, 404,
     ADMIN, {}),
    ("img_action_unknown", "POST", I + "/images/{img}/actions/explode", None, 404, ADMIN, {}),
    ("img_tag_too_long", "PUT", I + "/images/{img_tagged}/tags/" + "t" * 256, None, 400, ADMIN,
     {}),
    ("img_tag_invalid_utf8", "PUT", I + "/images/{img_tagged}/tags/%FF%FE", None, (400, 404),
     ADMIN, {}),
    ("img_tag_unknown_image", "PUT", I + "/images/{unknown}/tags/a", None, 404, ADMIN, {}),
    ("img_tag_delete_missing", "DELETE", I + "/images/{img_tagged}/tags/no-such-tag", None, 404,
     ADMIN, {}),
    ("img_tag_other_project", "PUT", I + "/images/{img_private}/tags/a", None, 404, MEMBER, {}),
    ("img_members_private_create", "POST", I + "/images/{img_private}/members",
     {"member": "{member_pid}"}, 403, ADMIN, {}),
    ("img_members_private_list", "GET", I + "/images/{img_private}/members", None, 403, ADMIN,
     {}),
    ("img_member_missing", "POST", I + "/images/{img_member}/members", {}, 400, ADMIN, {}),
    ("img_member_number", "POST", I + "/images/{img_member}/members", {"member": 5}, 400, ADMIN,
     {}),
    ("img_member_too_long", "POST", I + "/images/{img_member}/members", {"member": "m" * 256},
     400, ADMIN, {}),
    ("img_member_not_json", "POST", I + "/images/{img_member}/members", b"member", 400, ADMIN,
     {}),
    ("img_member_duplicate", "POST", I + "/images/{img_member}/members",
     {"member": "{member_pid}"}, 409, ADMIN, {}),
    ("img_member_unknown_image", "POST", I + "/images/{unknown}/members",
     {"member": "{member_pid}"}, 404, ADMIN, {}),
    ("img_member_show_unknown", "GET", I + "/images/{img_member}/members/no-such-member", None,
     404, ADMIN, {}),
    ("img_member_status_bogus", "PUT", I + "/images/{img_member}/members/{member_pid}",
     {"status": "maybe"}, 400, MEMBER, {}),
    ("img_member_status_number", "PUT", I + "/images/{img_member}/members/{member_pid}",
     {"status": 1}, 400, MEMBER, {}),
    ("img_member_status_by_owner", "PUT", I + "/images/{img_member}/members/{member_pid}",
     {"status": "accepted"}, 403, ADMIN, {}),
    ("img_member_add_by_member", "POST", I + "/images/{img_member}/members",
     {"member": "{admin_pid}"}, 403, MEMBER, {}),
    ("img_member_delete_unknown", "DELETE", I + "/images/{img_member}/members/no-such-member",
     None, 404, ADMIN, {}),
    ("img_schema_unknown", "GET", I + "/schemas/no-such-schema", None, 404, ADMIN, {}),
    ("img_unknown_route", "GET", I + "/no-such-collection", None, 404, ADMIN, {}),
    ("img_unknown_version", "GET", "/image/v9/images", None, 404, ADMIN, {}),
    ("image_header_too_large", "GET", I + "/images", None, 431, ADMIN, {"X-Big": "a" * 70000}),
    ("image_path_too_long", "GET", I + "/images/" + "x" * 70000, None, (414, 431), ADMIN, {}),
    ("image_create_body_too_large", "POST", I + "/images",
     b'{"name": "' + b"x" * (2 << 20) + b'"}', 413, ADMIN, {}),
]

# ---- 405 rows from the route lists ------------------------------------------------------------
# The compute routes registered in src/compute/service/api_*.cc (path after /compute/v2.1) with
# their methods; HEAD is implied by GET.
COMPUTE_ROUTES = [
    ("/servers", "GET POST"),
    ("/servers/detail", "GET"),
    ("/servers/{server}", "GET PUT DELETE"),
    ("/servers/{server}/action", "POST"),
    ("/servers/{server}/metadata", "GET POST PUT"),
    ("/servers/{server}/metadata/k", "GET PUT DELETE"),
    ("/servers/{server}/tags", "GET PUT DELETE"),
    ("/servers/{server}/tags/t", "GET PUT DELETE"),
    ("/servers/{server}/os-instance-actions", "GET"),
    ("/servers/{server}/os-instance-actions/{request_id}", "GET"),
    ("/flavors", "GET POST"),
    ("/flavors/detail", "GET"),
    ("/flavors/{flavor}", "GET PUT DELETE"),
    ("/flavors/{flavor}/os-extra_specs", "GET POST"),
    ("/flavors/{flavor}/os-extra_specs/k", "GET PUT DELETE"),
    ("/flavors/{flavor}/os-flavor-access", "GET"),
    ("/flavors/{flavor}/action", "POST"),
    ("/os-keypairs", "GET POST"),
    ("/os-keypairs/{keypair}", "GET DELETE"),
    ("/limits", "GET"),
    ("/os-quota-sets/{member_pid}", "GET PUT DELETE"),
    ("/os-quota-sets/{member_pid}/detail", "GET"),
    ("/os-quota-sets/{member_pid}/defaults", "GET"),
    ("/os-quota-class-sets/default", "GET PUT"),
    ("/os-availability-zone", "GET"),
    ("/os-availability-zone/detail", "GET"),
    ("/os-server-groups", "GET POST"),
    ("/os-server-groups/{group}", "GET DELETE"),
    ("/os-hypervisors", "GET"),
    ("/os-hypervisors/detail", "GET"),
    ("/os-hypervisors/statistics", "GET"),
    ("/os-hypervisors/{unknown}", "GET"),
    ("/os-hypervisors/h/search", "GET"),
    ("/os-hypervisors/h/servers", "GET"),
    ("/os-services", "GET"),
    ("/os-services/enable", "PUT"),
    ("/os-services/disable", "PUT"),
    ("/os-services/disable-log-reason", "PUT"),
    ("/os-services/{unknown}", "PUT"),
    # src/compute/service/api_admin.cc
    ("/os-aggregates", "GET POST"),
    ("/os-aggregates/999999", "GET PUT DELETE"),
    ("/os-aggregates/999999/action", "POST"),
    ("/os-hosts", "GET"),
    ("/os-hosts/h", "GET PUT"),
    ("/os-hosts/h/startup", "GET"),
    ("/os-hosts/h/shutdown", "GET"),
    ("/os-hosts/h/reboot", "GET"),
    ("/os-hypervisors/999999/uptime", "GET"),
    ("/os-migrations", "GET"),
    ("/servers/{server}/migrations", "GET"),
    ("/servers/{server}/migrations/1", "GET"),
    ("/servers/{server}/diagnostics", "GET"),
    ("/os-server-external-events", "POST"),
    ("/os-instance_usage_audit_log", "GET"),
    ("/os-instance_usage_audit_log/2026-01-01", "GET"),
    # src/compute/service/api_proxy.cc
    ("/images", "GET"),
    ("/images/detail", "GET"),
    ("/images/{img}", "GET DELETE"),
    ("/images/{img}/metadata", "GET POST PUT"),
    ("/images/{img}/metadata/k", "GET PUT DELETE"),
    ("/os-simple-tenant-usage", "GET"),
    ("/os-simple-tenant-usage/{admin_pid}", "GET"),
    ("/servers/{server}/os-server-password", "GET DELETE"),
    ("/extensions", "GET"),
    ("/extensions/os-keypairs", "GET"),
]
# The image routes registered in src/image/image_service.cc (path after /image).
IMAGE_ROUTES = [
    ("/v2/images", "GET POST DELETE"),
    ("/v2/images/{img}", "GET PATCH DELETE"),
    ("/v2/images/{img}/file", "GET PUT"),
    ("/v2/images/{img}/actions/deactivate", "POST"),
    ("/v2/images/{img}/actions/reactivate", "POST"),
    ("/v2/images/{img}/tags/t", "PUT DELETE"),
    ("/v2/images/{img}/members", "GET POST"),
    ("/v2/images/{img}/members/{member_pid}", "GET PUT DELETE"),
    ("/v2/schemas/image", "GET"),
    ("/v2/schemas/images", "GET"),
    ("/v2/schemas/member", "GET"),
    ("/v2/schemas/members", "GET"),
]
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _segments(path):
    return [s for s in path.split("/") if s]


def _could_match(route, other):
    """True when `other` (a concrete route of the list) could be served by `route`'s pattern
    in the real table: literal segments that the table registers as {param} collide."""
    a, b = _segments(route), _segments(other)
    if len(a) != len(b):
        return False
    return all(x == y or x.startswith("{") or y.startswith("{") for x, y in zip(a, b))


def _add_405_rows(prefix, routes, tag):
    for route, allowed in routes:
        allowed_set = set(allowed.split())
        # A literal path that shares its shape with a parameterised route (/servers/detail and
        # /servers/{id}) may be served by that route for the other methods: not a 405 row.
        for other, other_allowed in routes:
            if other != route and _could_match(route, other):
                allowed_set |= set(other_allowed.split())
        if "GET" in allowed_set:
            allowed_set.add("HEAD")
        for method in ALL_METHODS:
            if method in allowed_set:
                continue
            slug = re.sub(r"[^a-z0-9]+", "_", route.lower()).strip("_")
            body = {} if method in ("POST", "PUT", "PATCH") else None
            CASES.append(("405_%s_%s_%s" % (tag, method.lower(), slug), method, prefix + route,
                          body, 405, ADMIN, {}))


_add_405_rows(C, COMPUTE_ROUTES, "compute")
_add_405_rows("/image", IMAGE_ROUTES, "image")


# ---- checks -----------------------------------------------------------------------------------

NOVA_FAULTS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 406: "notAcceptable", 409: "conflictingRequest",
               413: "overLimit", 415: "badMediaType", 429: "overLimit", 501: "notImplemented"}
VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def fill(text):
    if isinstance(text, bytes):
        for k, val in FIX.items():
            text = text.replace(("{%s}" % k).encode(), str(val).encode())
        return text
    return text.format(**FIX)


def fill_json(value):
    if isinstance(value, dict):
        return {fill_json(k): fill_json(x) for k, x in value.items()}
    if isinstance(value, list):
        return [fill_json(x) for x in value]
    if isinstance(value, str) and "{" in value and len(value) < 200:
        return fill(value)
    return value


def is_pending(path):
    return any(p in path for p in PENDING_ROUTES)


def router_answer(resp):
    """An error from the router itself (no such route / method), which answers before any
    microversion is parsed, as Nova's URL mapper does."""
    if resp.status not in (404, 405):
        return False
    text = resp.body.decode("utf-8", errors="replace")
    return ("The resource could not be found: " in text or
            "The method is not allowed for the requested URL" in text)


def router_404(resp):
    """The router's own 'no such route' answer (its message names the path)."""
    if resp.status != 404:
        return False
    text = resp.body.decode("utf-8", errors="replace")
    return "The resource could not be found: " in text


def check_nova(tc, name, resp, requested_version):
    where = "%s: %r" % (name, resp)
    modern = resp.header("openstack-api-version")
    legacy = resp.header("x-openstack-nova-api-version")
    tc.assertIsNotNone(modern, "%s: no OpenStack-API-Version header" % where)
    tc.assertIsNotNone(legacy, "%s: no X-OpenStack-Nova-API-Version header" % where)
    m = re.match(r"^compute (\d+\.\d+)$", modern)
    tc.assertTrue(m, "%s: OpenStack-API-Version %r" % (where, modern))
    tc.assertEqual(m.group(1), legacy, "%s: the two version headers differ" % where)
    if (requested_version and VERSION_RE.match(requested_version) and
            resp.status not in (400, 406) and not router_answer(resp)):
        tc.assertEqual(legacy, requested_version, "%s: requested version not echoed" % where)
    if resp.status < 400:
        return
    ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
    tc.assertEqual(ctype, "application/json", "%s: Nova error is not JSON" % where)
    try:
        doc = json.loads(resp.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        tc.fail("%s: error body is not JSON (%s)" % (where, e))
    tc.assertIsInstance(doc, dict, where)
    tc.assertEqual(len(doc), 1, "%s: a Nova fault has exactly one key" % where)
    fault, inner = next(iter(doc.items()))
    tc.assertNotEqual(fault, "computeFault", where)
    if resp.status in NOVA_FAULTS:
        tc.assertEqual(fault, NOVA_FAULTS[resp.status], "%s: fault name" % where)
    else:
        # Nova has no name of its own for this status (431, 414): any camelCase name but
        # computeFault, which clients read as a server error.
        tc.assertRegex(fault, r"^[a-z][A-Za-z]+$", "%s: fault name" % where)
    tc.assertIsInstance(inner, dict, where)
    tc.assertEqual(inner.get("code"), resp.status, "%s: fault code" % where)
    tc.assertIsInstance(inner.get("message"), str, "%s: fault message" % where)
    tc.assertTrue(inner["message"], "%s: empty fault message" % where)


def check_glance(tc, name, resp):
    where = "%s: %r" % (name, resp)
    if resp.status < 400:
        return
    ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
    tc.assertIn(ctype, ("text/plain", "text/html"), "%s: Glance error content type" % where)
    text = resp.body.decode("utf-8")
    tc.assertTrue(text.startswith("%d " % resp.status),
                  "%s: Glance error body must start with the status line" % where)


BIG_BODY = 256 * 1024


def big_request(method, url, body, headers, token):
    """Sends a large body on a raw socket, tolerating an early answer and close: a server may
    refuse an oversize body (413) before reading it all, and http.client then fails with a
    broken pipe instead of returning the answer."""
    hdrs = {"Host": "x", "Accept": "application/json", "Content-Type": "application/json",
            "Content-Length": str(len(body)), "Connection": "close"}
    if token:
        hdrs["X-Auth-Token"] = token
    hdrs.update(headers)
    head = "%s %s HTTP/1.1\r\n%s\r\n" % (method, url, "".join(
        "%s: %s\r\n" % kv for kv in hdrs.items()))
    sock = socket.create_connection(SRV.host_port, timeout=REQUEST_TIMEOUT)
    try:
        try:
            sock.sendall(head.encode("latin-1"))
            for i in range(0, len(body), 65536):
                sock.sendall(body[i:i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
    finally:
        sock.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise AssertionError("no HTTP answer to a %d-byte body: %r" % (len(body), out[:200]))
    resp_headers = {}
    for line in lines[1:]:
        k, _, val = line.partition(b":")
        resp_headers[k.strip().lower().decode("latin-1")] = val.strip().decode("latin-1")
    n = resp_headers.get("content-length")
    if n and n.isdigit():
        rest = rest[:int(n)]
    return concord_launcher.Response(int(m.group(1)), resp_headers, rest)


def make_case(name, method, path, body, expect, token_kind, headers):
    expect = (expect,) if isinstance(expect, int) else tuple(expect)

    def test(self):
        if name in EXPECTED_BUGS and not os.environ.get("CONCORD_RUN_EXPECTED_BUGS"):
            self.skipTest("known bug: " + EXPECTED_BUGS[name])
        hdrs = {k: fill(x) for k, x in headers.items()}
        token = FIX["token"] if token_kind == ADMIN else FIX.get(token_kind) if token_kind \
            else None
        b = body
        if isinstance(b, str):
            b = fill(b)
        elif isinstance(b, bytes):
            b = fill(b) if len(b) < 4096 and b"{" in b else b
        elif b is not None:
            b = json.dumps(fill_json(b))
        url = fill(path)
        if isinstance(b, str):
            b = b.encode("utf-8")
        if b is not None and len(b) > BIG_BODY:
            r = big_request(method, url, b, hdrs, token)
        else:
            r = SRV.request(method, url, b, headers=hdrs, token=token, timeout=REQUEST_TIMEOUT)
        STATUSES.append((name, r.status, 501 in expect))
        allowed = expect
        if is_pending(path) and router_404(r) and r.status not in expect:
            PENDING_404.append(name)
            allowed = expect + (404,)
        self.assertTrue(r.status < 500 or (r.status == 501 and 501 in expect),
                        "%s: server error %s %s -> %r" % (name, method, url, r))
        self.assertIn(r.status, allowed, "%s: %s %s -> %r" % (name, method, url, r))
        if path.startswith(C) or path.startswith("/compute"):
            kind, _, number = hdrs.get("OpenStack-API-Version", "").partition(" ")
            requested = number if kind == "compute" else hdrs.get("X-OpenStack-Nova-API-Version")
            if method != "HEAD":
                check_nova(self, name, r, requested)
        elif method != "HEAD":
            check_glance(self, name, r)
        if r.status == 405:
            allow = r.header("allow")
            self.assertTrue(allow, "%s: 405 without Allow header" % name)
            self.assertNotIn(method, [a.strip() for a in allow.split(",")],
                             "%s: Allow %r lists the rejected method" % (name, allow))
    test.__name__ = "test_case_" + name
    return test


class BadInputComputeTest(unittest.TestCase):
    maxDiff = None

    def test_fixture_server_left_build(self):
        # Without an agent the scheduler must still decide (ERROR: no valid host); a server
        # stuck in BUILD would make the action rows test a different state than documented.
        self.assertNotEqual(FIX["server_status"], "BUILD")

    def test_upload_lies_leave_images_unusable(self):
        # A refused upload must not leave an image behind that compute would boot. Fresh
        # images here, so the test does not depend on the order of the rows.
        lies = [("qcow2", "bare", RANDOM_4K), ("raw", "bare", qcow2_header()),
                ("raw", "docker", b"not a tar archive\n" * 200), ("iso", "bare", RANDOM_4K),
                ("vmdk", "bare", RANDOM_4K), ("raw", "bare", VMDK_DESCRIPTOR),
                ("raw", "bare", b"KDMV" + RANDOM_4K), ("raw", "bare", b"vhdxfile" + RANDOM_4K)]
        for disk, container, data in lies:
            with self.subTest(disk_format=disk, container_format=container, head=data[:8]):
                r = SRV.request("POST", I + "/images", {
                    "name": "bic-lie", "disk_format": disk, "container_format": container},
                    token=FIX["token"], timeout=REQUEST_TIMEOUT)
                self.assertEqual(r.status, 201, r)
                image_id = r.json()["id"]
                r = SRV.request("PUT", "%s/images/%s/file" % (I, image_id), data, headers=OCTET,
                                token=FIX["token"], timeout=REQUEST_TIMEOUT)
                STATUSES.append(("lie_upload_" + disk, r.status, False))
                self.assertEqual(r.status, 400, r)
                check_glance(self, "lie_upload_" + disk, r)
                r = SRV.request("GET", "%s/images/%s" % (I, image_id), token=FIX["token"],
                                timeout=REQUEST_TIMEOUT)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["status"], "queued", r)
                r = SRV.request("GET", "%s/images/%s/file" % (I, image_id), token=FIX["token"],
                                timeout=REQUEST_TIMEOUT)
                self.assertEqual(r.status, 204, "no data may be served after a refused upload")
                r = SRV.request("POST", C + "/servers", json.dumps(fill_json(
                    server(imageRef=image_id))), token=FIX["token"], timeout=REQUEST_TIMEOUT)
                STATUSES.append(("lie_boot_" + disk, r.status, False))
                self.assertEqual(r.status, 400, r)
                check_nova(self, "lie_boot_" + disk, r, None)

    def test_oversize_user_data_boundary(self):
        # The limit is on the base64 text: 65535 bytes pass validation (then 202), 65536 do not.
        ok = base64.b64encode(b"u" * 49149).decode()  # 65532 characters
        big = ok + "dQ=="                                # 65536 characters, still valid base64
        self.assertLessEqual(len(ok), 65535)
        self.assertEqual(len(big), 65536)
        r = SRV.request("POST", C + "/servers", json.dumps(fill_json(server(user_data=big))),
                        token=FIX["token"], timeout=REQUEST_TIMEOUT)
        STATUSES.append(("user_data_65536", r.status, False))
        self.assertEqual(r.status, 400, r)
        check_nova(self, "user_data_65536", r, None)
        r = SRV.request("POST", C + "/servers", json.dumps(fill_json(server(user_data=ok))),
                        token=FIX["token"], timeout=REQUEST_TIMEOUT)
        STATUSES.append(("user_data_65532", r.status, False))
        self.assertEqual(r.status, 202, r)

    def test_zz_server_alive_and_healthy(self):
        self.assertTrue(SRV.alive(), "server died:\n" + SRV.log_tail())
        r = SRV.request("GET", "/healthz", timeout=REQUEST_TIMEOUT)
        self.assertEqual(r.status, 200, r)
        r = SRV.request("GET", C + "/servers/" + FIX["server"], token=FIX["token"],
                        timeout=REQUEST_TIMEOUT)
        self.assertEqual(r.status, 200, r)
        r = SRV.request("GET", I + "/images/" + FIX["img"], token=FIX["token"],
                        timeout=REQUEST_TIMEOUT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "active", r)

    def test_zz_no_5xx_seen(self):
        bad = [(n, s) for n, s, allow_501 in STATUSES
               if s is not None and s >= 500 and not (s == 501 and allow_501)]
        self.assertEqual(bad, [], "5xx answers: %r" % bad)

    def test_zz_metrics_count_no_5xx(self):
        r = SRV.request("GET", "/metrics", timeout=REQUEST_TIMEOUT)
        self.assertEqual(r.status, 200, r)
        expected_501 = sum(1 for _, s, allow in STATUSES if s == 501 and allow)
        status_series = 0
        five = []
        seen_501 = 0
        for line in r.body.decode("utf-8").splitlines():
            if line.startswith("#") or "{" not in line:
                continue
            labels = line[line.index("{") + 1:line.rindex("}")]
            value = float(line.rsplit(" ", 1)[1])
            for m in re.finditer(r'(\w+)="([^"]*)"', labels):
                if m.group(1) not in ("code", "status", "status_code", "status_class"):
                    continue
                status_series += 1
                if m.group(2) == "501" and line.startswith("concord_http_requests_total{"):
                    seen_501 += int(value)
                elif re.fullmatch(r"5(\d\d|xx)", m.group(2)) and m.group(2) != "501" and \
                        value > 0:
                    five.append(line)
        self.assertGreater(status_series, 0,
                           "no metric series labelled with an HTTP status in /metrics")
        self.assertEqual(five, [], "5xx in /metrics")
        # 501 is Nova's notImplemented for actions this cloud does not offer; only the rows
        # that name it may have produced one.
        self.assertEqual(seen_501, expected_501, "501 answers outside the rows that expect them")


_names = [c[0] for c in CASES]
assert len(_names) == len(set(_names)), "duplicate row names: %r" % sorted(
    n for n in set(_names) if _names.count(n) > 1)

for _case in CASES:
    setattr(BadInputComputeTest, "test_case_" + _case[0], make_case(*_case))


if __name__ == "__main__":
    unittest.main()
