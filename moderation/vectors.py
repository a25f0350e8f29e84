"""pgvector plumbing shared by the write path and search: vectors as parameters.

The pipeline writes vectors and looks up duplicates with them; search reads them.
Both go through here, so neither imports the other.
"""

from __future__ import annotations

import numpy as np


def to_db(vector) -> list[float]:
    """A vector as the list pgvector's field writes fastest, rounded to what halfvec keeps."""
    return np.asarray(vector, dtype=np.float32).round(5).tolist()


def vector_literal(vector) -> str:
    """A vector as pgvector's text form, for a query parameter."""
    return "[" + ",".join(map(str, to_db(vector))) + "]"
