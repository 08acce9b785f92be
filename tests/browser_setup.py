"""Make sure Debian's tools for the browser and operations-kit tests are there (never a download).

Run by `make test`. When we are root on a Debian machine without them, installs with apt-get:
`chromium` for the browser tests, a CJK font so the screenshots kept as artifacts show the
console's Chinese, and `prometheus` for its /usr/bin/promtool, which checks the alert rules in
ops/prometheus (tests/unit/test_ops_kit.py; the package's own server is not needed, and where
a policy-rc.d forbids it, as in containers, apt-get does not start it). Elsewhere it only says
which tests will be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
PROMTOOL = "/usr/bin/promtool"
#: Debian package -> the file it provides that the tests look for.
NEEDED = (("chromium", CHROMIUM), ("fonts-wqy-zenhei", CJK_FONT), ("prometheus", PROMTOOL))


def main() -> int:
    missing = [pkg for pkg, path in NEEDED if not os.path.exists(path)]
    if not missing:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"not installed (needs root and apt-get): {', '.join(missing)}; without chromium the browser "
              "tests are skipped, without the font their screenshots show boxes for Chinese, without "
              "prometheus (promtool) the alert-rule check is skipped (it fails under CI=true)", file=sys.stderr)
        return 0
    print(f"installing Debian's {' and '.join(missing)} for the browser and ops-kit tests ...",
          file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    done = subprocess.run(install, check=False, env=env)
    if done.returncode != 0:
        print(f"{' and '.join(missing)} could not be installed; browser or ops-kit tests may be skipped",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
