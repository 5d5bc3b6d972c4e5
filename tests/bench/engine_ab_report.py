"""engine_ab_report.py: engine_ab.sh's output as ratios of CPU per request
(per MB in bulk) to upper-ref in the same round, and to a named build
(argument 2), with their ranges and medians, and context switches per
request.  CPU is in clock ticks of 10 ms, so a run needs a few hundred of
them (3 s of (a)) to resolve a few per cent."""
import collections
import json
import sys


def main():
    d = collections.defaultdict(lambda: collections.defaultdict(dict))
    names = []
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.startswith("R "):
                continue
            p = line.split(None, 6)
            try:
                j = json.loads(p[6])
            except (IndexError, ValueError):
                continue
            r, row, n, cpu, cs = p[1], p[2], p[3], int(p[4]), int(p[5])
            if n not in names:
                names.append(n)
            if row == "f":
                work, tput = j["mb_per_s"] * j["duration_s"], j["mb_per_s"]
            else:
                work, tput = j["all"], j["rps"]
            d[row][r][n] = (cpu * 10000.0 / work, cs / work, tput)
    base = sys.argv[2] if len(sys.argv) > 2 else None
    for row in d:
        print("row", row, "(CPU us per request; bulk per MB)")
        rat = collections.defaultdict(list)
        cs = collections.defaultdict(list)
        for _, x in sorted(d[row].items()):
            if "ref" not in x:
                continue
            for n in names:
                if n not in x:
                    continue
                rat[n].append(x[n][0] / x["ref"][0])
                cs[n].append(x[n][1])
                if base and base in x and n != base:
                    rat[n + "/" + base].append(x[n][0] / x[base][0])
        for n, v in rat.items():
            v.sort()
            extra = ""
            if n in cs:
                c = sorted(cs[n])
                extra = "   context switches/op median %.3f" % c[len(c) // 2]
            print("  %-16s CPU ratio %.2f-%.2f (median %.2f)%s"
                  % (n, v[0], v[-1], v[len(v) // 2], extra))


if __name__ == "__main__":
    main()
