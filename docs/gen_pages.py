"""Write the site's front pages from README.md (the single source): ``index.md`` (what it is,
the two commands, the API tour), ``cli.md`` (command line, deploy, scale-out) and
``results.md``. Links to repository files outside ``docs/`` become plain paths, so that
``mkdocs build --strict`` checks only the site's own links. Run by ``make docs``."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"docs/methods.md": "methods.md"}


def _links(text):
    def fix(match):
        label, target = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "#")):
            return match.group(0)
        if target in PAGES:
            return f"[{label}]({PAGES[target]})"
        return label if label.startswith("`") else f"{label} (`{target}`)"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", fix, text)


def main():
    readme = (ROOT / "README.md").read_text()
    cut = {name: readme.index(name) for name in ("## Two commands", "## CLI", "## Results")}
    intro = readme[:cut["## Two commands"]]
    pages = {
        "index.md": intro + readme[cut["## Two commands"]:cut["## CLI"]],
        "cli.md": "# Command line, deploy and scale-out\n\n"
                  + readme[cut["## CLI"]:cut["## Results"]].replace("## CLI\n", "", 1),
        "results.md": "# Results\n" + readme[cut["## Results"]:].split("\n", 1)[1],
    }
    for name, text in pages.items():
        (ROOT / "docs" / name).write_text(_links(text))


if __name__ == "__main__":
    main()
