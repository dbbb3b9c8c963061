"""LibGo from Python: start a container, run a command in it, delete it.

    python examples/python/hello.py [NAME]
"""

from __future__ import annotations

import sys

import libgo


def main(name: str) -> None:
    client = libgo.Client({"kvm": "off"})
    web = client.create(
        {
            "name": name,
            "kind": "container",
            "image": "libgo-test/busybox:latest",
            "command": ["sleep", "300"],
            "start": True,
        }
    )
    try:
        out = client.exec(web["id"], ["echo", "hello from LibGo"])
        print(f"{web['name']} says: {out['stdout'].strip()}")
    finally:
        client.delete(name, force=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "hello-py")
