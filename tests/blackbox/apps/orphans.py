"""Leaves N orphans to its parent (roadie) and checks that every one is reaped.

usage: orphans.py N DELAY
An intermediate process forks N children and exits at once, so they are re-parented to
roadie; each child exits DELAY seconds after a common instant (a burst of simultaneous exits
whose SIGCHLDs coalesce). Then this app polls /proc until no process but itself has roadie as
its parent, zombies included, and prints `orphans=N left=0`; it exits 1 after 15 s.
"""
import os
import sys
import time

count, delay = int(sys.argv[1]), float(sys.argv[2])
roadie = os.getppid()
me = os.getpid()
exit_at = time.time() + delay

intermediate = os.fork()
if intermediate == 0:
    for _ in range(count):
        if os.fork() == 0:
            time.sleep(max(0.0, exit_at - time.time()))
            os._exit(0)
    os._exit(0)
os.waitpid(intermediate, 0)


def roadies_other_children():
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == roadie:
            found.append((int(entry), fields[0]))
    return found


deadline = time.time() + 15
seen_max = 0
while time.time() < deadline:
    left = roadies_other_children()
    seen_max = max(seen_max, len(left))
    if not left and time.time() > exit_at:
        print(f"orphans={count} left=0 most_seen={seen_max}", flush=True)
        sys.exit(0)
    time.sleep(0.02)
left = roadies_other_children()
zombies = sum(1 for _, state in left if state == "Z")
print(f"orphans={count} left={len(left)} zombies={zombies}", flush=True)
sys.exit(1)
