"""Feature links between two modalities: parsing, orientation and validation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Fewer usable links than this are rejected. Anchors are mutual nearest neighbours under the
#: cosine (angular) distance in the linked-feature space: with one linked feature every cell is
#: at angle 0 or π from every other (only the sign counts), with two the space is a single
#: angle; three is the smallest space in which angular neighbourhoods separate several types.
MIN_LINKS = 3

Links = pd.DataFrame | Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]


@dataclass
class ResolvedLinks:
    """Links checked against both modalities' features.

    Attributes
    ----------
    pairs
        Two-column frame (columns: the two modality names) of the usable links, one row each.
    n_given
        Distinct links given.
    missing
        ``{modality: names}`` of link features that the modality does not have.
    swapped
        Whether the given links were oriented ``(mod2, mod1)`` and were turned around.
    """

    pairs: pd.DataFrame
    n_given: int
    missing: dict[str, list[str]] = field(default_factory=dict)
    swapped: bool = False

    @property
    def n_used(self) -> int:
        """Number of usable links."""
        return len(self.pairs)

    def counts(self) -> dict[str, Any]:
        """Counts for ``uns[...]["params"]``."""
        mod_a, mod_b = self.pairs.columns
        return {
            "n_links_given": self.n_given,
            "n_links_used": self.n_used,
            "n_links_dropped": self.n_given - self.n_used,
            f"n_linked_{mod_a}": int(self.pairs[mod_a].nunique()),
            f"n_linked_{mod_b}": int(self.pairs[mod_b].nunique()),
        }


def _as_pairs(links: Any) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """Any accepted link format → list of ``(left, right)`` and the column names if known."""
    if isinstance(links, pd.DataFrame):
        if links.shape[1] != 2:
            raise ValueError(
                f"`links` as a DataFrame needs exactly two columns (features of one modality and "
                f"the linked features of the other), got {links.shape[1]}: {list(links.columns)}."
            )
        if links.isna().any().any():
            raise ValueError("`links` has missing values; drop the incomplete rows first.")
        names = (str(links.columns[0]), str(links.columns[1]))
        return list(zip(links.iloc[:, 0], links.iloc[:, 1], strict=True)), names
    if isinstance(links, Mapping):
        pairs = []
        for key, value in links.items():
            if not isinstance(value, str) and not isinstance(value, Iterable):
                raise ValueError(
                    f"`links[{key!r}]` must be a feature name or a list of feature names, got "
                    f"{value!r}; pass e.g. {{'CD3': 'CD3E', 'CD8': ['CD8A', 'CD8B']}}."
                )
            targets = [value] if isinstance(value, str) else list(value)
            pairs.extend((key, t) for t in targets)
        return pairs, None
    if isinstance(links, str) or not isinstance(links, Iterable):
        raise ValueError(
            f"`links` must be a two-column DataFrame, a list of (feature, feature) pairs or a "
            f"dict {{feature: feature or [features]}}, got {type(links).__name__}."
        )
    pairs = []
    for item in links:
        if isinstance(item, str) or not isinstance(item, Iterable) or len(tuple(item)) != 2:
            raise ValueError(
                f"Every entry of `links` must be a (feature, feature) pair, got {item!r}."
            )
        pairs.append(tuple(item))
    return pairs, None


def resolve_links(
    links: Links,
    features: Mapping[str, pd.Index],
    *,
    drop_missing: bool = False,
    min_links: int = MIN_LINKS,
) -> ResolvedLinks:
    """Check feature links against two modalities and orient them.

    Parameters
    ----------
    links
        Two-column DataFrame, list of pairs or dict ``{feature: feature or [features]}``
        (one-to-many allowed). The orientation is taken from the DataFrame's column names when
        they are the modality names, else the one under which more links match (e.g. a
        protein → gene dict works for ``mod1="rna", mod2="prot"``).
    features
        ``{modality: var_names}`` of exactly two modalities, in order.
    drop_missing
        Use only the links whose two features exist; otherwise links naming missing features
        are an error.
    min_links
        Fewest usable links accepted.

    Returns
    -------
    :class:`ResolvedLinks`.
    """
    (mod_a, names_a), (mod_b, names_b) = features.items()
    pairs, columns = _as_pairs(links)
    if not pairs:
        raise ValueError("`links` is empty; pass at least one (feature, feature) pair.")
    bad = [p for p in pairs if not all(isinstance(x, str | np.str_) for x in p)]
    if bad:
        raise ValueError(
            f"Link features must be feature names (strings), got e.g. {bad[:3]}; pass "
            "`var_names`, not positions."
        )
    pairs = list(dict.fromkeys((str(a), str(b)) for a, b in pairs))
    set_a, set_b = set(names_a), set(names_b)

    def n_ok(ps):
        return sum(a in set_a and b in set_b for a, b in ps)

    flipped = [(b, a) for a, b in pairs]
    if columns is not None and set(columns) == {mod_a, mod_b}:
        swapped = columns[0] == mod_b
    else:
        swapped = n_ok(flipped) > n_ok(pairs)
    if swapped:
        pairs = flipped
    missing_a = sorted({a for a, _ in pairs if a not in set_a})
    missing_b = sorted({b for _, b in pairs if b not in set_b})
    missing = {m: names for m, names in ((mod_a, missing_a), (mod_b, missing_b)) if names}
    if missing and not drop_missing:
        detail = "; ".join(
            f"{len(names)} not in `{m}` var_names (e.g. {names[:5]})"
            for m, names in missing.items()
        )
        raise ValueError(
            f"`links` names features that do not exist: {detail}. Fix the names, or pass "
            "`drop_missing_links=True` to use only the links whose two features exist."
        )
    usable = [(a, b) for a, b in pairs if a in set_a and b in set_b]
    if len(usable) < min_links:
        raise ValueError(
            f"Only {len(usable)} of the {len(pairs)} links connect features of both `{mod_a}` "
            f"and `{mod_b}`; scMODAL needs at least {min_links} (its anchors are angular "
            "nearest neighbours in the linked-feature space, which need at least three "
            "dimensions). Pass more links (e.g. a protein → gene table)."
        )
    frame = pd.DataFrame(usable, columns=[mod_a, mod_b])
    return ResolvedLinks(frame, len(pairs), missing, swapped)
