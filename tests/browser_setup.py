"""Make sure Debian's Chromium is there for the browser tests (never a downloaded browser).

Run by `make test`. Installs the `chromium` package with apt-get when we are root on a Debian
machine without it, and a CJK font so the screenshots kept as artifacts show the console's
Chinese; elsewhere it only says that the browser tests will be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


def main() -> int:
    missing = [pkg for pkg, path in (("chromium", CHROMIUM), ("fonts-wqy-zenhei", CJK_FONT)) if not os.path.exists(path)]
    if not missing:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"not installed (needs root and apt-get): {', '.join(missing)}; without chromium the browser "
              "tests are skipped, without the font their screenshots show boxes for Chinese", file=sys.stderr)
        return 0
    print(f"installing Debian's {' and '.join(missing)} for the browser tests ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env)
    if done.returncode != 0:
        print(f"{' and '.join(missing)} could not be installed; browser tests may be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
