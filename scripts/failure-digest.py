#!/usr/bin/env python3
"""Prints a short digest of each failed test in a CTest LastTest.log: the lines that say
what failed (harness FAIL checks, gtest failures, sanitizer reports, tracebacks) and the
last lines of its output. scripts/test.sh prints it after CTest, so that a log cut in the
middle (as CI shows a long one) still ends with why each test failed.

usage: failure-digest.py LastTest.log [max_lines_per_test]
"""
import re
import sys

# What a failing test's output says about its failure, across the suite's harnesses.
TELLING = re.compile(r"^(FAIL |FAIL\b|\[  FAILED|.*Failure$|.*(error|Error|ERROR): |==\d+==ERROR|"
                     r"SUMMARY: |WATCHDOG: |Traceback|\S+Error: |SystemExit|RESULT: |.*did not become ready|"
                     r".*timed out|\*\*\*)")


def failed_blocks(text):
    """(name, output lines, verdict) for each test whose block does not end 'Test Passed.'"""
    for m in re.finditer(r'^\d+/\d+ Testing: (\S+)\n(.*?)\n"\1" end time:', text, re.S | re.M):
        name, body = m.group(1), m.group(2)
        out_start = body.find("Output:\n")
        out_end = body.rfind("<end of output>")
        if out_start < 0 or out_end < 0:
            continue
        tail = body[out_end:]
        if "Test Passed." in tail:
            continue
        verdict = [l for l in tail.splitlines() if l.startswith("Test ") and "time" not in l]
        lines = body[out_start:out_end].splitlines()[2:]  # past "Output:" and the rule
        yield name, lines, " ".join(verdict) or "failed"


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    try:
        text = open(sys.argv[1], errors="replace").read()
    except OSError as e:
        print(f"failure digest: {e}")
        return
    names = []
    for name, lines, verdict in failed_blocks(text):
        names.append(name)
        print(f"=== failure digest: {name} ({verdict})")
        # A harness prints its logs' tails after the checks; the telling lines come from
        # the test's own part (before the first "--- x.log (tail)" banner) first.
        own = next((i for i, l in enumerate(lines) if l.startswith("--- ") and l.endswith("(tail)")),
                   len(lines))
        telling = [l for l in lines[:own] if TELLING.match(l)]
        telling += [l for l in lines[own:] if TELLING.match(l)]
        for l in telling[:limit]:
            print("  " + l[:300])
        if len(telling) > limit:
            print(f"  ... {len(telling) - limit} more")
        print("  --- last lines of its own output:")
        for l in lines[max(0, own - 8):own]:
            print("  " + l[:300])
    if names:
        print("failed: " + " ".join(names))


if __name__ == "__main__":
    main()
