#!/usr/bin/python3
"""Summarizes a Tempest subunit v2 stream and compares it with the expected-to-pass list.

Prints passed/failed/skipped counts, every failing test with a one-line reason (the last
line of its traceback, plus the Tempest "Details:" line when there is one), the failures
grouped by that reason, and then:
  * expected tests that did not pass   -> exit 1 (a regression);
  * passing tests not in the list      -> printed only, so the list can grow.
Test ids are compared without their "[id-...,smoke]" attribute suffix.

Usage: summarize.py RESULTS.subunit EXPECTED.txt [--write-passing FILE]
Runs on /usr/bin/python3 (python3-subunit and python3-testtools come with tempest).
"""
import argparse
import collections
import re
import sys

import subunit
import testtools


def base_id(test_id):
    return re.sub(r"\[.*\]$", "", test_id)


def reason_of(details):
    text = ""
    for key in ("traceback", "reason"):
        if key in details:
            try:
                text = "".join(details[key].iter_text())
            except Exception:  # a detail with an odd content type: reason stays empty
                text = ""
            break
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no traceback)"
    # Tempest puts the HTTP body on a "Details: ..." line after the exception line.
    for i, ln in enumerate(lines):
        if ln.startswith("Details:") and i > 0:
            return (lines[i - 1] + " " + ln)[:400]
    exc = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Failure|NotFound|"
                                          r"Forbidden|Unauthorized|BadRequest|Conflict|"
                                          r"Mismatch|ServerFault|UnexpectedResponseCode|"
                                          r"InvalidHTTPResponseBody|TimeoutException|"
                                          r"UnexpectedContentType)\b", ln)]
    return (exc[-1] if exc else lines[-1])[:400]


def group_key(reason):
    key = re.sub(r"[0-9a-f]{32}", "<id>", reason)
    key = re.sub(r"req-[0-9a-f-]{36}", "<req>", key)
    key = re.sub(r"tempest-[\w-]+", "<name>", key)
    key = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "<time>", key)
    return key[:160]


def load(path):
    results = {}

    def on_test(test):
        tid = test["id"]
        if test["status"] in ("exists", "inprogress", None):
            return
        results[tid] = (test["status"], reason_of(test["details"]))

    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        try:
            case.run(result)
        finally:
            result.stopTestRun()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("expected")
    ap.add_argument("--write-passing", help="write the sorted passing ids to this file")
    args = ap.parse_args()

    results = load(args.results)
    by_status = collections.defaultdict(list)
    for tid, (status, reason) in sorted(results.items()):
        by_status[status].append((tid, reason))
    passed = {base_id(t) for t, _ in by_status["success"]}
    failed = by_status["fail"] + by_status["uxsuccess"]
    skipped = by_status["skip"]

    print("tempest: %d passed, %d failed, %d skipped (%d results)"
          % (len(passed), len(failed), len(skipped), len(results)))
    if failed:
        print("\nFAILED tests:")
        for tid, reason in failed:
            print("  %s\n      %s" % (base_id(tid), reason))
        groups = collections.defaultdict(list)
        for tid, reason in failed:
            groups[group_key(reason)].append(base_id(tid))
        print("\nFailures grouped by reason:")
        for key, tids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print("  [%d] %s" % (len(tids), key))
            for t in tids:
                print("        %s" % t)
    if skipped:
        reasons = collections.Counter(group_key(r) for _, r in skipped)
        print("\nSkip reasons:")
        for reason, n in reasons.most_common():
            print("  %3d  %s" % (n, reason))

    try:
        with open(args.expected) as f:
            expected = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    except FileNotFoundError:
        expected = set()
        print("\n(no %s yet)" % args.expected)

    if args.write_passing:
        with open(args.write_passing, "w") as f:
            f.write("".join(t + "\n" for t in sorted(passed)))
        print("\nwrote %d passing test ids to %s" % (len(passed), args.write_passing))

    missing = sorted(expected - passed)
    extra = sorted(passed - expected)
    if extra:
        print("\nPassing but not in expected-pass.txt (%d; add them to grow the list):"
              % len(extra))
        for t in extra:
            print("  " + t)
    if missing:
        print("\nREGRESSION: %d expected tests did not pass:" % len(missing))
        for t in missing:
            ran = [(s, r) for tid, (s, r) in results.items() if base_id(tid) == t]
            # With its reason: CI shows the lines that say "(fail)" (scripts/test.sh).
            print("  %s (%s)%s" % (t, ran[0][0] if ran else "not run",
                                   ": " + ran[0][1] if ran and ran[0][0] == "fail" else ""))
        return 1
    print("\nall %d expected tests passed" % len(expected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
