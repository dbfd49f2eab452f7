"""Uploads two public busybox container images as admin; prints their ids (image_ref, alt).

Used by run.sh for the compute profile: Tempest boots its servers from image_ref, and a
container image makes each server ACTIVE in a fraction of a second.

The image is the compute tests' busybox guest with a short boot banner in front of its /init:
that guest prints only two lines per boot, while Tempest's console-output tests assume a real
guest's boot log (more than 3 lines). Without the banner those tests poll for the whole
build_timeout (2 minutes each) before failing.
"""
import io
import json
import os
import sys
import tarfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import workloads  # noqa: E402


def call(method, url, token=None, body=None, content_type="application/json"):
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.headers, r.read()  # case-insensitive lookups


BANNER_LINES = 5
WRAPPER = """#!/bin/sh
# Tempest's guest: a few boot-log lines, then the Concord test guest (tests/fixtures).
i=1
while [ $i -le %d ]; do
  echo "tempest-guest: boot log line $i of %d"
  i=$((i + 1))
done
exec /init.concord-guest "$@"
""" % (BANNER_LINES, BANNER_LINES)


def with_banner(rootfs):
    """The rootfs tar with /init moved to /init.concord-guest and the banner wrapper as /init."""
    out = io.BytesIO()
    found = False
    with tarfile.open(fileobj=io.BytesIO(rootfs)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name in ("./init", "init"):
                found = True
                original = data.read()
                member.name = member.name + ".concord-guest"
                dst.addfile(member, io.BytesIO(original))
                wrapper = tarfile.TarInfo(member.name[:-len(".concord-guest")])
                wrapper.mode = 0o755
                wrapper.mtime = member.mtime
                body = WRAPPER.encode()
                wrapper.size = len(body)
                dst.addfile(wrapper, io.BytesIO(body))
            else:
                dst.addfile(member, data)
    if not found:
        raise SystemExit("upload_images.py: the busybox rootfs has no /init")
    return out.getvalue()


def main():
    auth_url, password = sys.argv[1].rstrip("/"), sys.argv[2]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": password, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    _, headers, raw = call("POST", auth_url + "/auth/tokens", body=body)
    token = headers["X-Subject-Token"]
    catalog = json.loads(raw)["token"]["catalog"]
    image_url = [e["url"] for s in catalog if s["type"] == "image" for e in s["endpoints"]
                 if e["interface"] == "public"][0].rstrip("/")
    with open(os.path.join(workloads.fixtures(), "busybox-rootfs.tar"), "rb") as f:
        data = with_banner(f.read())
    ids = []
    for name in ("tempest-busybox", "tempest-busybox-alt"):
        _, _, raw = call("POST", image_url + "/v2/images", token, {
            "name": name, "disk_format": "raw", "container_format": "docker",
            "visibility": "public"})
        image_id = json.loads(raw)["id"]
        call("PUT", "%s/v2/images/%s/file" % (image_url, image_id), token, data,
             "application/octet-stream")
        ids.append(image_id)
    print(" ".join(ids))


if __name__ == "__main__":
    main()
