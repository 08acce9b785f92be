"""Make sure Debian's Chromium is there for the browser tests (never a downloaded browser).

Run by `make test`. Installs the `chromium` package with apt-get when we are root on a Debian
machine without it; elsewhere it only says that the browser tests will be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"browser tests will be skipped: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 0
    print("installing Debian's chromium for the browser tests ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=False, env=env)
    if done.returncode != 0:
        print("chromium could not be installed; browser tests will be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
