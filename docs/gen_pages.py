"""Write the site's pages from the repository's single sources (run by ``make docs``):

- from ``README.md``: ``index.md`` (what it is, the two commands, the API tour), ``cli.md``
  (the command line), ``deploy.md`` (export, TensorBoard, mixed precision), ``scale.md``
  (several machines, adopting a method on an existing model) and ``results.md``;
- from ``docs/methods.md``: ``methods/index.md`` (sources, background, what the papers report)
  and one page per method (``methods/<slug>.md``: what it does, the formulas, the paper) that
  ends with the README results rows measured for it ("when it helps").

Links to repository files outside ``docs/`` become plain paths, so that ``mkdocs build
--strict`` checks only the site's own links.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: method section heading (its start) -> (page slug, the seed tag its README result rows carry)
METHODS = {
    "## Seed 000": ("binary-wreg-cosine-momentum", "000"),
    "## Seed 001": ("fda", "001"),
    "## Seed 002": ("hwgq", "002"),
    "## Seed 003": ("ternary", "003"),
    "## Seed 004": ("cluster", "004"),
    "## Distillation": ("distillation", "distil"),
}
PAGES = {"docs/methods.md": "methods/index.md"}


def _links(text, depth=0):
    up = "../" * depth

    def fix(match):
        label, target = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "#", "../")):  # ../: the site's own pages
            return match.group(0)
        if target in PAGES:
            return f"[{label}]({up}{PAGES[target]})"
        return label if label.startswith("`") else f"{label} (`{target}`)"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", fix, text)


def _sections(text, level="## "):
    """``[(heading line, body)]`` of the ``level`` sections of ``text`` (code blocks skipped)."""
    out, heading, body, fenced = [], None, [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith(level):
            if heading is not None or body:
                out.append((heading, "".join(body)))
            heading, body = line.rstrip("\n"), []
        else:
            body.append(line)
    out.append((heading, "".join(body)))
    return out


def _result_rows(readme, tag):
    """The README results table's header and the rows whose first cell names ``tag``."""
    table = [line for line in readme[readme.index("## Results"):].splitlines()
             if line.startswith("|")]
    rows = [row for row in table[2:] if tag in row.split("|")[1].lower()]
    return table[:2] + rows if rows else []


def readme_pages(readme):
    parts = dict((h, b) for h, b in _sections(readme) if h)
    intro = _sections(readme)[0][1]
    deploy = _sections(parts["## Deploy"], "### ")
    return {
        "index.md": intro + "## Two commands (from a fresh clone)\n"
                    + parts["## Two commands (from a fresh clone)"]
                    + "## API tour\n" + parts["## API tour"],
        "cli.md": "# Command line\n" + parts["## CLI"],
        "deploy.md": "# Deploy, TensorBoard and mixed precision\n" + deploy[0][1],
        "scale.md": "# Scale out and adopt\n" + "".join(
            f"{h.replace('### ', '## ')}\n{b}" for h, b in deploy[1:]),
        "results.md": "# Results\n" + parts["## Results"],
    }


def method_pages(methods, readme):
    sections = _sections(methods)
    index = [sections[0][1]]
    pages = {}
    for heading, body in sections[1:]:
        key = next((k for k in METHODS if heading.startswith(k)), None)
        if key is None:
            index.append(f"{heading}\n{body}")
            continue
        slug, tag = METHODS[key]
        rows = _result_rows(readme, tag)
        measured = ("\n## Measured here (when it helps)\n\nFrom the results table "
                    "(details in [Results](../results.md)):\n\n" + "\n".join(rows) + "\n"
                    if rows else "")
        pages[f"methods/{slug}.md"] = f"# {heading[3:]}\n{body}{measured}"
    links = "\n".join(f"- [{title[3:]}]({slug}.md)" for (slug, _), title in
                      zip(METHODS.values(), [h for h, _ in sections[1:]
                                             if any(h.startswith(k) for k in METHODS)]))
    pages["methods/index.md"] = index[0] + "\n## The methods\n\n" + links + "\n\n" + \
        "".join(index[1:])
    return pages


def main():
    readme = (ROOT / "README.md").read_text()
    methods = (ROOT / "docs" / "methods.md").read_text()
    (ROOT / "docs" / "methods").mkdir(exist_ok=True)
    for name, text in readme_pages(readme).items():
        (ROOT / "docs" / name).write_text(_links(text))
    for name, text in method_pages(methods, readme).items():
        (ROOT / "docs" / name).write_text(_links(text, depth=1))


if __name__ == "__main__":
    main()
