"""Entry point of the ``wave`` console script.

Python's standard library has an audio module called ``wave``, and the standard library comes before
site-packages on ``sys.path``: a plain ``from wave.cli import main`` would import the wrong ``wave``. This
launcher puts the directory that holds this project's ``wave`` package first, then hands over.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    home = str(Path(__file__).resolve().parent)
    if (Path(home) / "wave" / "cli.py").exists() and sys.path[:1] != [home]:
        sys.path.insert(0, home)
    sys.modules.pop("wave", None)
    from wave.cli import main as wave_main

    return wave_main()


if __name__ == "__main__":
    raise SystemExit(main())
