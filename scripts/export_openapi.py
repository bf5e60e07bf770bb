"""Write the service's OpenAPI schema to ``openapi.json`` at the repository root (or check it is current).

    python scripts/export_openapi.py           # rewrite openapi.json
    python scripts/export_openapi.py --check   # exit 1 when openapi.json differs from the app's schema
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "openapi.json"


def openapi_text() -> str:
    """The app's schema as stable, indented JSON (the app is built but not started).

    The schema states the server's configured limits, so it is built from the defaults alone: any
    ``CNNRELAX_*`` variable of the calling environment is ignored.
    """
    from cnnrelax.api import create_app
    from cnnrelax.settings import Settings

    for name in [name for name in os.environ if name.startswith("CNNRELAX_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=Path(data_dir), api_keys=[]))
        return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 on a difference.")
    parser.add_argument("--output", type=Path, default=TARGET, help="Where to write (default: openapi.json).")
    args = parser.parse_args()
    text = openapi_text()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/export_openapi.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
