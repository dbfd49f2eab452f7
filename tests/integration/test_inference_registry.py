"""The model registry (/inference/v1) on the real binary, with plain HTTP (urllib).

Starts `concord all-in-one --agent.enabled=false`, takes the admin's token, creates a model,
uploads the committed Fashion-MNIST ONNX fixture as version 1, reads the version's metadata and
bytes back, checks that a file that is not a model is refused with 400 in the registry's error
format and leaves nothing behind, and that the catalog lists the inference endpoint. Then a
kill -9 in the middle of another upload and a restart: the acknowledged version and its bytes
are still there, the interrupted upload left no version and no spooled file. And the OpenAPI
document (docs/api/inference-v1.yaml) lists exactly the routes the binary serves.
"""
import hashlib
import json
import os
import socket
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concord_launcher  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models",
                       "fashion_mnist_cnn.onnx")
OPENAPI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "api",
                       "inference-v1.yaml")


class InferenceRegistryTest(unittest.TestCase):
    def setUp(self):
        self.srv = concord_launcher.Server(extra_args=["--agent.enabled=false"])
        self.addCleanup(self.srv.cleanup)
        self.srv.start()
        self.token = self.srv.admin_token()
        self.base = self.srv.url + "/inference/v1"
        with open(FIXTURE, "rb") as f:
            self.fixture = f.read()

    def call(self, method, path, body=None, content_type="application/json"):
        """Returns (status, headers, body bytes); HTTP errors are answers too."""
        data = body
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-Auth-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def test_upload_read_back_and_reject(self):
        status, _, body = self.call("POST", "/models", {"name": "fashion"})
        self.assertEqual(status, 201, body)
        model = json.loads(body)["model"]
        self.assertIsNone(model["publisher"])
        self.assertEqual(model["versions"], [])
        mid = model["id"]

        status, _, body = self.call("PUT", "/models/%s/versions/1" % mid, self.fixture,
                                    "application/octet-stream")
        self.assertEqual(status, 201, body)
        version = json.loads(body)["version"]
        self.assertEqual(version["sha256"], hashlib.sha256(self.fixture).hexdigest())
        self.assertEqual(version["size"], len(self.fixture))
        self.assertEqual(version["status"], "ready")
        self.assertEqual(version["runtime"], "opencv")
        self.assertEqual(version["inputs"],
                         [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}])
        self.assertEqual(version["outputs"],
                         [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}])

        status, headers, data = self.call("GET", "/models/%s/versions/1/file" % mid)
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/octet-stream")
        self.assertEqual(data, self.fixture)

        # Not a model: 400 in the registry's format, and no version recorded.
        status, headers, body = self.call("PUT", "/models/%s/versions/2" % mid,
                                          b"this is not an ONNX model" * 10,
                                          "application/octet-stream")
        self.assertEqual(status, 400, body)
        self.assertEqual(headers["content-type"], "application/json")
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], 400)
        self.assertTrue(err["message"].startswith("model rejected: invalid ONNX model: "), err)
        status, _, body = self.call("GET", "/models/%s/versions" % mid)
        self.assertEqual(status, 200)
        self.assertEqual([v["version"] for v in json.loads(body)["versions"]], [1])

        # Re-uploading a version is a conflict.
        status, _, body = self.call("PUT", "/models/%s/versions/1" % mid, self.fixture,
                                    "application/octet-stream")
        self.assertEqual(status, 409, body)

        # The catalog publishes the service.
        r = self.srv.request("GET", self.srv.v3 + "/auth/catalog", token=self.token)
        self.assertEqual(r.status, 200, r)
        types = {s["type"]: s for s in r.json()["catalog"]}
        self.assertIn("inference", types)
        self.assertEqual(len(types["inference"]["endpoints"]), 3)  # public, internal, admin
        self.assertTrue(all(e["url"].endswith("/inference")
                            for e in types["inference"]["endpoints"]))

        # kill -9 in the middle of an upload, then restart: the acknowledged version and its
        # bytes survive, the interrupted one left no version and no spooled file.
        head = ("PUT /inference/v1/models/%s/versions/3 HTTP/1.1\r\nHost: x\r\n"
                "X-Auth-Token: %s\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: %d\r\n\r\n" % (mid, self.token, len(self.fixture)))
        host, port = self.srv.host_port
        sock = socket.create_connection((host, port), timeout=10)
        try:
            sock.sendall(head.encode() + self.fixture[:len(self.fixture) // 2])
            spool = os.path.join(self.srv.data_dir, "models", "tmp")
            deadline = time.monotonic() + 10
            while not os.listdir(spool) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(os.listdir(spool), "the upload was not being spooled")
            self.srv.kill9()
        finally:
            sock.close()
        self.srv.start()
        self.token = self.srv.admin_token()
        self.base = self.srv.url + "/inference/v1"
        status, _, data = self.call("GET", "/models/%s/versions/1/file" % mid)
        self.assertEqual(status, 200)
        self.assertEqual(data, self.fixture)
        status, _, body = self.call("GET", "/models/%s/versions" % mid)
        self.assertEqual([v["version"] for v in json.loads(body)["versions"]], [1])
        self.assertEqual(os.listdir(os.path.join(self.srv.data_dir, "models", "tmp")), [])

    def test_openapi_document_matches_the_routes(self):
        """Every documented route answers (401 without a token, not 404/405), and every other
        method on a documented path is 405: the document describes exactly these routes."""
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml is not installed")
        with open(OPENAPI) as f:
            doc = yaml.safe_load(f)
        methods = {"get", "put", "post", "patch", "delete"}
        # The registry's 5 paths and the endpoints' 2 (/endpoints, /endpoints/{endpoint_id}).
        self.assertEqual(len(doc["paths"]), 7)
        for path, item in doc["paths"].items():
            concrete = (path.replace("{model_id}", "m").replace("{version}", "1")
                        .replace("{endpoint_id}", "e"))
            for method in sorted(methods):
                r = self.srv.request(method.upper(), "/inference/v1" + concrete,
                                     body=b"" if method in ("put", "post", "patch") else None)
                expected = 401 if method in item else 405
                self.assertEqual(r.status, expected, "%s %s: %r" % (method, path, r))
                self.assertEqual(r.json()["error"]["code"], expected)


if __name__ == "__main__":
    unittest.main()
