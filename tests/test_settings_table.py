"""The README's settings table lists every setting wave reads, and nothing else.

Engineers add settings to wave/config.py; a setting missing from the table is one no user can find. The
table's variable column is compared with the Settings object, and no server module reads a ``WAVE_*``
variable behind the Settings object's back.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from wave.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _table() -> dict[str, str]:
    """Variable -> TOML key, from the rows of the table in the README's Configuration section."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `WAVE_"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`(WAVE_[A-Z0-9_]+)`", cells[0])
        assert len(names) == 1, f"one variable per row, spelled out in full: {line}"
        rows[names[0]] = cells[1].strip("`")
    return rows


def test_every_setting_is_in_the_readme_table_and_only_those() -> None:
    table = _table()
    settings = {f.metadata["env"]: f.name for f in fields(Settings)}
    missing = sorted(set(settings) - set(table))
    assert not missing, f"add a row to the README's settings table for {', '.join(missing)}"
    unknown = sorted(set(table) - set(settings) - {"WAVE_CONFIG"})
    assert not unknown, f"the README's settings table lists {', '.join(unknown)}, which wave/config.py does not read"
    wrong_keys = {env: key for env, key in table.items() if env in settings and key != settings[env]}
    assert not wrong_keys, f"the Key column must be the TOML key (the Settings field): {wrong_keys}"


def test_the_table_defaults_are_the_real_defaults() -> None:
    """The simple defaults (numbers, names): a changed default must change the README too."""
    defaults = load_settings(environ={})
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| `WAVE_") or not cells[1]:
            continue
        key, shown = cells[1].strip("`"), cells[2]
        value = getattr(defaults, key)
        if isinstance(value, str) and value and not value.startswith("<"):
            assert f"`{value}`" in shown, f"{key}: README says {shown}, the default is {value!r}"
        elif isinstance(value, int) and not isinstance(value, bool) and key in {"port", "upstream_retries"}:
            assert shown == f"`{value}`", f"{key}: README says {shown}, the default is {value}"


def test_no_server_module_reads_wave_variables_itself() -> None:
    reads = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["']WAVE_""")
    offenders = []
    for path in (ROOT / "wave").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "wave/config.py" or relative.startswith("wave/client/"):
            continue
        if reads.search(path.read_text()):
            offenders.append(relative)
    assert not offenders, f"read settings through wave.config.Settings: {offenders}"
