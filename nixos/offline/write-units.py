"""Writes the unit trees of nixos/offline/units.nix (JSON on stdin) into a directory.

    nix-instantiate --eval --strict --json nixos/offline/units.nix --arg lib ... \
      | python3 nixos/offline/write-units.py OUT

OUT/<configuration>/<path> is a file ({"text": ...}) or a symbolic link ({"link": ...}).
"""

import json
import os
import sys


def main() -> None:
    out = sys.argv[1]
    for configuration, files in json.load(sys.stdin).items():
        for path, entry in files.items():
            target = os.path.join(out, configuration, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if "link" in entry:
                os.symlink(entry["link"], target)
            else:
                with open(target, "w", encoding="utf-8") as f:
                    f.write(entry["text"])


if __name__ == "__main__":
    main()
