#!/usr/bin/env python3
"""Peak memory of `privbucket up --code DIR` on folders larger than Lambda's unzipped limit.

    python3 bench/package_memory.py BINARY [--write bench/PACKAGE_MEMORY.md]

The folders are sparse files (no disk is used); every AWS call the binary might make goes to
a closed port on 127.0.0.1, so nothing leaves the machine. Cases:

- twice the limit (500 MiB in five files): refused from the files' sizes, before any read;
- just under the limit (240 MiB of zeros in one file): packaged by streaming, so the peak is
  the zip and a buffer, not the file;
- a link to /dev/zero: refused from its type, before any read.
"""
import argparse
import os
import sys
import tempfile
import time

MIB = 1024 * 1024
LIMIT = 250 * MIB


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def run(binary, code, home):
    closed = "http://127.0.0.1:9"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(home, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
        "AWS_ENDPOINT_URL": closed,
        "AWS_MAX_ATTEMPTS": "1",
    }
    pid = os.fork()
    if pid == 0:
        os.chdir(home)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execve(binary, [binary, "up", "--code", code], env)
    started = time.monotonic()
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--write")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        os.mkdir(home)
        twice = os.path.join(tmp, "twice")
        os.mkdir(twice)
        for i in range(5):
            sparse(os.path.join(twice, f"blob{i}.bin"), 100 * MIB)
        under = os.path.join(tmp, "under")
        os.mkdir(under)
        sparse(os.path.join(under, "zeros.bin"), 240 * MIB)
        with open(os.path.join(under, "app.py"), "w") as f:
            f.write("def handler(e, c):\n    return e\n")
        zero = os.path.join(tmp, "zero")
        os.mkdir(zero)
        os.symlink("/dev/zero", os.path.join(zero, "data.bin"))
        for name, code, size in [
            ("twice the limit (5 x 100 MiB)", twice, 500 * MIB),
            ("just under the limit (240 MiB of zeros)", under, 240 * MIB),
            ("a link to /dev/zero", zero, None),
        ]:
            wall, rss, exit_code = run(a.binary, code, home)
            rows.append((name, size, exit_code, wall, rss))
    lines = [
        "| folder | size | exit | wall s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, size, exit_code, wall, rss in rows:
        shown = f"{size // MIB} MiB" if size else "endless"
        lines.append(f"| {name} | {shown} | {exit_code} | {wall:.2f} | {rss:.1f} |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        with open(a.write, "w") as f:
            f.write(
                "# Peak memory of packaging\n\n"
                "Made by `python3 bench/package_memory.py BINARY --write "
                "bench/PACKAGE_MEMORY.md`. Lambda's unzipped limit is 250 MiB; "
                "the folders are sparse files. Exit 2 is the refusal (nothing called); exit 3 "
                "is the first AWS call failing against a closed local port, after the package "
                "was built.\n\n" + table + "\n"
            )
    worst = max(r[4] for r in rows)
    return 0 if worst < LIMIT / MIB + 64 else 1


if __name__ == "__main__":
    sys.exit(main())
