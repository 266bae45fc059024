"""Unpicklers that run no pickled code: a weight file may name only an allow-list of globals."""

from __future__ import annotations

import pickle
from typing import Any


class AllowListUnpickler(pickle.Unpickler):
    """`find_class` admits only `ALLOWED[(module, name)]` (the object to use for it) and
    raises for anything else, before it could be imported or called; `WHAT` names the
    file's kind in the error."""

    ALLOWED: dict = {}
    WHAT = "pickle"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name} in {self.WHAT}") from None
