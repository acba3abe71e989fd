"""A griffe extension for the docs build: the docstrings' reStructuredText math
(``:math:`x``` and ``.. math::`` blocks, the notation ``help()`` readers see) becomes the
``\\(x\\)`` / ``\\[...\\]`` that ``pymdownx.arithmatex`` hands to MathJax, so formulas render."""

import re
import textwrap

from griffe import Extension

_ROLE = re.compile(r":math:`([^`]+)`")
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::(?P<first>.*)\n"
                    r"(?P<body>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)*)", re.M)


def rst_math_to_arithmatex(text):
    """``:math:`x``` -> ``\\(x\\)``; an indented ``.. math::`` block -> a ``\\[...\\]`` block."""
    def block(match):
        indent = match.group("indent")
        body = textwrap.dedent(match.group("body")).strip("\n")
        first = match.group("first").strip()  # the one-line form ``.. math:: x = y``
        body = f"{first}\n{body}".strip("\n") if first else body
        return f"{indent}\\[\n{textwrap.indent(body, indent)}\n{indent}\\]\n\n"

    text = _BLOCK.sub(block, text if text.endswith("\n") else text + "\n")
    return _ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)


class RstMath(Extension):
    """Rewrite the math of every docstring griffe loads."""

    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = rst_math_to_arithmatex(obj.docstring.value)
