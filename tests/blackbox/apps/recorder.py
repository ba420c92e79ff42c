"""Prints `got N` for every signal it receives; exits 0 after one of the --exit-on signals.

usage: recorder.py [--exit-on N,N] SIGNAL...   (numbers; "all" for every catchable one)
"""
import os
import signal
import sys

args = sys.argv[1:]
exit_on = set()
if args[:1] == ["--exit-on"]:
    exit_on = {int(s) for s in args[1].split(",")}
    args = args[2:]
if args == ["all"]:
    numbers = [s for s in range(1, signal.SIGRTMAX + 1)
               if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, 32, 33)]
else:
    numbers = [int(s) for s in args]


def handler(number, _frame):
    print(f"got {number}", flush=True)
    if number in exit_on:
        sys.exit(0)


for number in numbers:
    signal.signal(number, handler)
print(f"ready pid={os.getpid()} pgid={os.getpgrp()}", flush=True)
while True:
    signal.pause()
