"""Split inference under three emulated conditions (issue 5, "Split inference" tests).

A CPU-limited device (concord-device in a network namespace, 10% of one CPU) talks to
`concord inference-replica --split` (the model and its tails over OIP) across a veth pair:

  slow link        tbf 1 Mbit/s both ways          -> device-only or a late split (>= cut 11)
  fast link        no rate limit                    -> cloud-only or an early split (<= cut 3)
  overloaded       no rate limit; server at 5% of a CPU with 4 busy cloud-only clients
                                                    -> device-only (from the estimates, or
                                                       because a probe call timed out and the
                                                       endpoint was taken out of the plan)

The model is bench/inference/split_model.py's synthetic CNN (13 nodes, 12 cuts; the committed
Fashion-MNIST fixture runs in 0.1 ms, too fast for any link to matter). Every run also checks
(--verify) that each result equals the whole model's, bit for bit, whatever split was used,
and one more case runs every fixed split of the model across the namespace and checks the same.

No delay emulation: this kernel has no netem, so the RTT is the veth's own. Skips with the
reason when not root, without `ip netns`, tc or a cgroup v1 cpu controller, or when the
binaries are not given (CONCORD_DEVICE_BIN, CONCORD_BIN; sdk.cmake sets them).
"""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "inference"))

import split_env  # noqa: E402
import split_model  # noqa: E402

DEVICE_CPU_PERCENT = 10
SERVER_CPU_PERCENT_OVERLOADED = 5
NODES = 13


def most_used(r):
    """The split that answered the most requests of a run."""
    used = {int(k): v for k, v in r["splits_used"].items()}
    return max(used, key=used.get)


class SplitNetworkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, why = split_env.available()
        if not ok:
            raise unittest.SkipTest(why)
        cls.device_bin = os.environ.get("CONCORD_DEVICE_BIN", "")
        cls.server_bin = os.environ.get("CONCORD_BIN", "")
        if not os.path.exists(cls.device_bin) or not os.path.exists(cls.server_bin):
            raise unittest.SkipTest("set CONCORD_DEVICE_BIN and CONCORD_BIN")
        cls.tmp = tempfile.TemporaryDirectory(prefix="concord-split-test-")
        cls.model = os.path.join(cls.tmp.name, "cnn.onnx")
        with open(cls.model, "wb") as f:
            f.write(split_model.build())
        cls.env = split_env.SplitEnv(cls.server_bin, cls.device_bin, cls.tmp.name)
        cls.env.setup()

    @classmethod
    def tearDownClass(cls):
        cls.env.teardown()
        cls.tmp.cleanup()

    def decide(self, url, count, good):
        """run_device, once more when the split it settled on or the split it used most is not
        `good` (or the probe timed out): the device is a 10%-of-a-CPU cgroup, and on a shared
        2-core machine a neighbour's burst can make one run's measurements describe another
        machine (a first plan from a device estimate twice the truth kept a remote split for
        13 of 20 requests before the session's own measurements moved it to device-only). The
        second run decides; correctness (--verify) is checked on both."""
        for attempt in (1, 2):
            r = self.env.run_device(url, self.model, "cnn", "auto", count, DEVICE_CPU_PERCENT,
                                    extra=["--verify"])
            if r["returncode"] == 0:
                # Whatever the split, every result equals the whole model's.
                self.assertEqual(r["verified_differ"], 0, r["stdout"])
                if good(r["final_split"]) and good(most_used(r)):
                    break
            if attempt == 1:
                print(f"\n  attempt 1 did not decide as expected (rc {r['returncode']}, final "
                      f"split {r.get('final_split')}, used {r.get('splits_used')}); once more")
        return self.check_run(r, count)

    def check_run(self, r, count):
        detail = f"\nstdout:\n{r['stdout']}\nstderr:\n{r['stderr'][-3000:]}"
        self.assertEqual(r["returncode"], 0, detail)
        self.assertEqual(r["failures"], 0, detail)
        self.assertEqual(r["verified_equal"], count, detail)
        self.assertEqual(r["verified_differ"], 0, detail)
        used = {int(k): v for k, v in r["splits_used"].items()}
        most = most_used(r)
        # remote_available False: the probe found the endpoint unreachable, timed out or
        # overloaded, and the session planned device-only without estimates (session.h).
        print(f"\n  final split {r['final_split']}, used {used}, median "
              f"{r['latency_ms']['median']:.2f} ms, endpoint in the plan "
              f"{r.get('remote_available')}, link {r['link']}")
        return r, most, detail

    def test_slow_link_picks_device_only_or_a_late_split(self):
        self.env.set_rate("1mbit")
        try:
            url = self.env.start_server(self.model, "cnn")
            r, most, detail = self.decide(url, 10, lambda split: split >= 11)
            self.assertGreaterEqual(r["final_split"], 11, detail)
            self.assertGreaterEqual(most, 11, detail)
            # The probe saw a slow link: well under 1 Gbit/s (125 B/ms is 1 Mbit/s).
            self.assertLess(r["link"]["bandwidth_bytes_per_ms"], 1000, detail)
        finally:
            self.env.stop_server()
            self.env.set_rate(None)

    def test_fast_link_picks_cloud_only_or_an_early_split(self):
        self.env.set_rate(None)
        try:
            url = self.env.start_server(self.model, "cnn")
            r, most, detail = self.decide(url, 30, lambda split: split <= 3)
            self.assertLessEqual(r["final_split"], 3, detail)
            self.assertLessEqual(most, 3, detail)
        finally:
            self.env.stop_server()

    def test_every_split_equals_the_whole_model_across_the_namespace(self):
        # Unlimited link and CPU: only correctness is under test here.
        self.env.set_rate(None)
        try:
            url = self.env.start_server(self.model, "cnn")
            for split in ["cloud", "device"] + list(range(1, NODES)):
                r = self.env.run_device(url, self.model, "cnn", split, 2, None,
                                        extra=["--verify"])
                detail = f"split {split}\nstdout:\n{r['stdout']}\nstderr:\n{r['stderr'][-2000:]}"
                self.assertEqual(r["returncode"], 0, detail)
                self.assertEqual(r["verified_equal"], 2, detail)
                self.assertEqual(r["verified_differ"], 0, detail)
        finally:
            self.env.stop_server()

    def test_overloaded_server_picks_device_only(self):
        self.env.set_rate(None)
        try:
            url = self.env.start_server(self.model, "cnn",
                                        cpu_percent=SERVER_CPU_PERCENT_OVERLOADED)
            self.env.start_load(url, self.model, "cnn", clients=4)
            r, most, detail = self.decide(url, 20, lambda split: split == NODES)
            self.assertEqual(r["final_split"], NODES, detail)
            self.assertEqual(most, NODES, detail)
        finally:
            self.env.stop_server()


if __name__ == "__main__":
    unittest.main()
