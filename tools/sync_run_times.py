"""Write the measured notebook run times into the README table and each notebook's header.

    python tools/sync_run_times.py [test-output/notebook_resources.md]

``make test`` meters every notebook (one core, cold compile cache) and writes the table to
``test-output/notebook_resources.md``. This script copies those numbers, from that one
measurement, into the README's notebook table (seconds, peak MB) and into the
"**Run time:** about N s" sentence that opens every notebook, so the two never disagree
(``tests/test_notebook_conventions.py`` checks that they agree).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_TIME = re.compile(r"(\*\*Run time:\*\* about )(\d+)( s)")
TABLE_ROW = re.compile(r"^\| `(\d\d_\w+)` \|(.*)\| *([\d.]+) *\| *(\d+) *\|$")


def read_measurements(path: Path) -> dict[str, tuple[float, float]]:
    """{notebook stem: (seconds, peak MB)} from the meter's markdown table."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\| (?:notebooks/)?(\d\d_\w+)\.ipynb \| ([\d.]+) \| (\d+) \|$", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    if not out:
        raise SystemExit(f"no notebook rows in {path}")
    return out


def readme_times(readme: str) -> dict[str, tuple[float, float]]:
    """{notebook stem: (seconds, peak MB)} as the README's notebook table states them."""
    return {m.group(1): (float(m.group(3)), float(m.group(4)))
            for m in map(TABLE_ROW.match, readme.splitlines()) if m}


def stated_seconds(notebook: Path) -> int | None:
    """The N of "**Run time:** about N s" in a notebook's opening cell."""
    first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    m = RUN_TIME.search(first)
    return int(m.group(2)) if m else None


def main(argv: list[str]) -> int:
    table = Path(argv[0]) if argv else REPO / "test-output" / "notebook_resources.md"
    measured = read_measurements(table)
    readme_path = REPO / "README.md"
    lines = []
    for line in readme_path.read_text().splitlines():
        m = TABLE_ROW.match(line)
        if m and m.group(1) in measured:
            seconds, peak = measured[m.group(1)]
            line = f"| `{m.group(1)}` |{m.group(2)}| {seconds:.1f} | {peak:.0f} |"
        lines.append(line)
    readme_path.write_text("\n".join(lines) + "\n")
    for stem, (seconds, _) in measured.items():
        path = REPO / "notebooks" / f"{stem}.ipynb"
        nb = json.loads(path.read_text())
        first = nb["cells"][0]
        text = "".join(first["source"])
        new = RUN_TIME.sub(lambda m: f"{m.group(1)}{round(seconds)}{m.group(3)}", text)
        if new != text:
            first["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{stem}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
