"""The floor: parse every YAML document under a folder with libyaml, and nothing else.

Any Python scanner has to read its input; this is how long reading alone takes through
PyYAML's C loader. Kustos's time over this floor says how much its own analysis costs.

    python -m bench.floor DIR
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def main(argv: Sequence[str] | None = None) -> int:
    """Load every ``*.yaml`` file under each folder given; print the document count."""
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    count = 0
    for folder in argv if argv is not None else sys.argv[1:]:
        for path in sorted(Path(folder).rglob("*.yaml")):
            with path.open(encoding="utf-8") as stream:
                count += sum(1 for doc in yaml.load_all(stream, Loader=loader) if doc)
    print(count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
