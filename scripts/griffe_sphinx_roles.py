"""A Griffe extension for the docs site: Sphinx cross-reference roles in docstrings
(``:meth:`serve```, ``:class:`~uws_py.App```) become inline code.

The docstrings are written for readers of the source and for ``help()``, where the roles read
well; mkdocstrings renders docstrings as Markdown and would print the role name literally
(``:meth:serve``). Loaded by ``mkdocs.yml`` (``extensions:``), so no docstring is rewritten.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# :role:`target`, :py:role:`target`, :role:`~a.b.c` (the tilde shows only the last part).
ROLE = re.compile(r":(?:py:)?(?:meth|class|func|attr|mod|data|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by the Markdown code span of its target.

    Args:
        text: a docstring.
    """

    def code(match: re.Match[str]) -> str:
        target = match["target"].strip()
        if match["tilde"]:
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(code, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring Griffe loads (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called by Griffe for each object it loads."""
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
