#!/usr/bin/python3
"""Split-inference benchmark: end-to-end latency of the planner's choice (--split auto) against
device-only, cloud-only and every fixed split, under three emulated conditions (split_env.py):

  slow        tbf 1 Mbit/s both ways, device at 10% of a CPU
  fast        no rate limit, device at 10% of a CPU
  overloaded  no rate limit, device at 10%, server at 5% of a CPU with 4 busy cloud-only clients

Each (condition, mode) runs --repeats times, the modes interleaved in a rotating order within
each repeat so machine noise hits them alike; each run is one concord-device process sending
--count requests (one input each) and reporting its median request latency. The table gives
min / median / max over the runs of those medians, and the ratios that matter: planner / best
fixed split (goal: within 10%) and planner / cloud-only.

No delay emulation (no netem in this kernel): RTT is the veth's own.
"""
import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import split_env  # noqa: E402
import split_model  # noqa: E402

NODES = 13
CONDITIONS = {
    "slow": {"rate": "1mbit", "server_cpu": None, "load": 0},
    "fast": {"rate": None, "server_cpu": None, "load": 0},
    "overloaded": {"rate": None, "server_cpu": 5, "load": 4},
}


def mode_name(m):
    return {"auto": "planner (auto)", "cloud": "cloud-only", "device": "device-only"}.get(
        m, f"cut {m}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device-bin", required=True)
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--count", type=int, default=30, help="requests per run (fast, overloaded)")
    ap.add_argument("--count-slow", type=int, default=3,
                    help="requests per run on the slow link for the splits that upload 64 KiB "
                         "or more (cuts 1-8: one to nine seconds each at 1 Mbit/s)")
    ap.add_argument("--device-cpu", type=int, default=10, help="device CPU quota, percent")
    ap.add_argument("--only", default="slow,fast,overloaded", help="conditions to run")
    ap.add_argument("--results", default="")
    ap.add_argument("--command", default="bench/inference/split.sh")
    args = ap.parse_args()

    ok, why = split_env.available()
    if not ok:
        print(f"split benchmark skipped: {why}", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="concord-split-bench-")
    model = os.path.join(tmp.name, "cnn.onnx")
    with open(model, "wb") as f:
        f.write(split_model.build())
    env = split_env.SplitEnv(args.server_bin, args.device_bin, tmp.name)
    env.setup()
    modes = ["auto", "cloud", "device"] + [str(k) for k in range(1, NODES)]
    load_before = open("/proc/loadavg").read().split()[:3]
    started = time.time()
    out = []
    headline = []
    try:
        for cond in [c for c in args.only.split(",") if c]:
            spec = CONDITIONS[cond]
            env.set_rate(spec["rate"])
            url = env.start_server(model, "cnn", cpu_percent=spec["server_cpu"])
            if spec["load"]:
                env.start_load(url, model, "cnn", spec["load"])
                time.sleep(2)
            def count_for(m):
                heavy = m not in ("auto", "cloud", "device") and int(m) <= 8
                return args.count_slow if cond == "slow" and heavy else args.count
            medians = {m: [] for m in modes}
            chosen = []
            for r in range(args.repeats):
                order = modes[r % len(modes):] + modes[:r % len(modes)]
                for m in order:
                    split = m if m in ("auto", "cloud", "device") else int(m)
                    res = env.run_device(url, model, "cnn", split, count_for(m), args.device_cpu)
                    if res["returncode"] != 0 or res.get("failures", 1) != 0:
                        print(f"{cond} {m}: run failed ({res['returncode']}):\n"
                              f"{res['stderr'][-2000:]}", file=sys.stderr)
                        continue
                    medians[m].append(res["latency_ms"]["median"])
                    if m == "auto":
                        chosen.append(res["final_split"])
                    print(f"{cond} repeat {r + 1} {mode_name(m)}: median "
                          f"{res['latency_ms']['median']:.2f} ms", flush=True)
            env.stop_server()
            env.set_rate(None)

            med = {m: statistics.median(v) for m, v in medians.items() if v}
            fixed = {m: v for m, v in med.items() if m != "auto"}
            best = min(fixed, key=fixed.get)
            out.append(f"\n### {cond}: rate {spec['rate'] or 'unlimited'}, device "
                       f"{args.device_cpu}% CPU, server "
                       f"{str(spec['server_cpu']) + '% CPU' if spec['server_cpu'] else 'unlimited'}"
                       f"{', %d load clients' % spec['load'] if spec['load'] else ''}; "
                       f"{args.count} requests x {args.repeats} runs per mode"
                       f"{f' ({args.count_slow} for cuts 1-8)' if cond == 'slow' else ''}\n")
            out.append("| mode | min ms | median ms | max ms | / best fixed |")
            out.append("|---|---:|---:|---:|---:|")
            for m in modes:
                v = medians[m]
                if not v:
                    out.append(f"| {mode_name(m)} | failed | | | |")
                    continue
                mark = " **best**" if m == best else ""
                out.append(f"| {mode_name(m)}{mark} | {min(v):.2f} | {statistics.median(v):.2f} "
                           f"| {max(v):.2f} | {statistics.median(v) / fixed[best]:.2f} |")
            chosen_s = ", ".join(str(c) for c in chosen)
            if "auto" in med:
                headline.append(
                    f"| {cond} | {chosen_s} | {med['auto']:.2f} | {mode_name(best)} "
                    f"{fixed[best]:.2f} | {med['auto'] / fixed[best]:.2f} | "
                    f"{med['cloud'] / med['auto'] if 'cloud' in med else float('nan'):.2f} | "
                    f"{med['device'] / med['auto'] if 'device' in med else float('nan'):.2f} |")
    finally:
        env.teardown()
        tmp.cleanup()

    load_after = open("/proc/loadavg").read().split()[:3]
    lines = [f"## Split inference, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
             "",
             f"Command: `{args.command}`. Model: bench/inference/split_model.py (13 nodes, 12 "
             f"cuts, 3x64x64 input). Latency = one request (head here + tail there), median of "
             f"each run. Load average before {' '.join(load_before)}, after "
             f"{' '.join(load_after)}; {time.time() - started:.0f} s. No delay emulation "
             f"(no netem): RTT is the veth's own.",
             "",
             "| condition | planner's final splits | planner median ms | best fixed (median ms) "
             "| planner / best | cloud-only / planner | device-only / planner |",
             "|---|---|---:|---|---:|---:|---:|"] + headline + out
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        with open(args.results, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
