"""Helpers of bench/fleet.sh: the replay range of a fleet, and the judgement of the
alerts the detector printed against the fleet's truth.

    fleet_judge.py range TRUTH
    fleet_judge.py judge TRUTH ALERTS.jsonl
"""

import json
import sys
from datetime import datetime, timezone

MINUTE = 60_000
BEFORE, AFTER = 5 * MINUTE, 15 * MINUTE


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def judge(truth, alerts_path):
    pages, warnings = {}, set()
    for line in open(alerts_path):
        for alert in json.loads(line)["alerts"]:
            labels, notes = alert["labels"], alert["annotations"]
            if labels["alertname"] == "OmenIncident":
                pages.setdefault(labels["incident"], {
                    "start": ms(alert["startsAt"]), "raised": ms(notes["raised"]),
                    "root": labels.get("root_cause", ""), "members": notes["members"]})
            elif labels["alertname"] == "OmenEarlyWarning" and alert["status"] == "firing":
                warnings.add((ms(alert["startsAt"]), notes["series"]))
    explained, slow, warned = set(), 0, 0
    for w in truth["windows"]:
        near = {i: p for i, p in pages.items()
                if w["start_ms"] - BEFORE <= p["start"] <= w["end_ms"] + AFTER}
        explained |= set(near)
        kind = w["kind"]
        if kind == "planned":
            print(f"planned  {w['name']}: {len(near)} pages")
            continue
        service = f'service="{w["service"]}"'
        for p in near.values():
            ok = "right" if service in p["root"] else "WRONG"
            print(f"incident {w['name']}: paged {(p['raised'] - w['start_ms']) // MINUTE} min "
                  f"after onset, root cause {p['root']} ({ok})")
        if not near:
            print(f"incident {w['name']}: MISSED")
        if w["slow"] and near:
            slow += 1
            page = min(near.values(), key=lambda p: p["raised"])
            first = sorted(x for x in warnings
                           if w["start_ms"] <= x[0] < page["raised"] and x[1] in page["members"])
            if first:
                warned += 1
                print(f"  warned {(page['raised'] - first[0][0]) // MINUTE} min before the page, "
                      f"on {first[0][1]}")
    false = [p for i, p in pages.items() if i not in explained]
    weeks = (truth["end_ms"] - truth["live_start_ms"]) / (7 * 1440 * MINUTE)
    print(f"pages: {len(pages)}; false pages: {len(false)} ({len(false) / weeks:.1f} a week)")
    for p in false:
        print(f"  false page at {iso(p['start'])}: {p['root']}")
    print(f"early warnings: {len(warnings)} ({len(warnings) / weeks:.0f} a week); "
          f"slowly growing incidents warned before their page: {warned} of {slow}")


def main():
    command, truth = sys.argv[1], json.load(open(sys.argv[2]))
    if command == "range":
        print(f"{iso(truth['live_start_ms'])}..{iso(truth['end_ms'] - MINUTE)}")
    else:
        judge(truth, sys.argv[3])


if __name__ == "__main__":
    main()
