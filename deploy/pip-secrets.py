"""Write the host pip's index configuration as two build secrets, for deploy/build-image.

    python deploy/pip-secrets.py DIR     # writes DIR/pipconf and DIR/pipcert

``pipconf`` is a pip.conf with what reaches a package index from inside a build: the
index and extra index URLs (http and https only: a ``file://`` index or ``find-links``
folder of this machine does not exist in the build), trusted hosts, the timeout, and,
when the host's pip names a CA bundle (a proxy's certificate, say), ``cert`` pointing
at ``/run/secrets/pipcert``, a copy of that bundle. The Dockerfile mounts both for the
one RUN that downloads and no layer keeps them. Empty files when pip has none of it.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

#: pip settings that carry over into a build, under their pip.conf names.
KEYS = {"index-url": "index-url", "extra-index-url": "extra-index-url",
        "trusted-host": "trusted-host", "timeout": "timeout", "default-timeout": "timeout",
        "retries": "retries", "cert": "cert"}
LINE = re.compile(r"^[^.]*\.([a-z-]+)='(.*)'$")


def host_settings():
    """pip's effective settings, environment over files (what ``pip config list`` shows)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        if (match := LINE.match(line.strip())) and match[1] in KEYS:
            scope_is_env = line.startswith(":env:")
            key = KEYS[match[1]]
            if scope_is_env or key not in found:
                found[key] = match[2]
    return found


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = host_settings()
    lines = []
    for key in ("index-url", "extra-index-url", "trusted-host", "timeout", "retries"):
        value = settings.get(key)
        if key.endswith("index-url") and value:
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if value:
            lines.append(f"{key} = {value}")
    cert = out / "pipcert"
    cert.write_text("")
    if settings.get("cert") and Path(settings["cert"]).is_file():
        shutil.copyfile(settings["cert"], cert)
        lines.append("cert = /run/secrets/pipcert")
    (out / "pipconf").write_text("[global]\n" + "".join(f"{line}\n" for line in lines) if lines else "")
    print(f"pip settings for the build: {', '.join(line.split(' =')[0] for line in lines) or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1])
