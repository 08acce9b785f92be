"""What a caller may see, as one filter: a token's region and industry scope narrowed by a
request's `region` and `industry` filters (CONTRACT §5, §11).

Regions match by whole path segments: `江西省/赣州` does not see `江西省/赣州市`, `zone/1` does
not see `zone/10`. Every part only narrows: a record passes when it lies under one of the
token's regions (none: any), is of one of the token's industries (none: any), and matches the
request's filters. `Scope.sql` is the predicate every list and count query uses; `Scope.sees`
is the same test in Python for single records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

#: CONTRACT §11; `other` is the default.
INDUSTRIES = (
    "religious", "elderly_care", "welfare", "hospital", "school", "nine_small", "shared_use", "rental_housing",
    "residential", "industrial", "commercial", "entertainment", "other",
)


class UnknownIndustry(ValueError):
    """An industry outside `INDUSTRIES`; the message lists them."""

    def __init__(self, value: object) -> None:
        super().__init__(f"未知行业 / unknown industry {value!r}; expected one of {', '.join(INDUSTRIES)}")


def industry(value: object) -> str:
    """`value` when it is one of `INDUSTRIES`; else `UnknownIndustry`."""
    if not isinstance(value, str) or value not in INDUSTRIES:
        raise UnknownIndustry(value)
    return value


def industries(values: Sequence[str] | None) -> tuple[str, ...]:
    """Industry filter values, repeated or comma-separated, each checked; sorted, no repeats."""
    return tuple(sorted({industry(v.strip()) for item in values or () for v in item.split(",") if v.strip()}))


def like_escape(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (escape character backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def under(region: str | None, path: str) -> bool:
    """`region` is `path` or lies below it, by whole segments ('' is everything)."""
    path, region = path.strip("/"), region or ""
    return not path or region == path or region.startswith(path + "/")


@dataclass(frozen=True, slots=True)
class Scope:
    """A token's scope (`regions`, `industries`; empty: any) and a request's filters (`region`:
    one path or None; `industry`: any of these, empty: any)."""

    regions: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    region: str | None = None
    industry: tuple[str, ...] = ()

    def narrowed(self, region: str | None = None, industry: Sequence[str] = ()) -> Scope:
        """This scope with request filters; they narrow it and can never widen it."""
        return replace(self, region=region or None, industry=tuple(industry))

    @property
    def by_industry(self) -> bool:
        """Whether records are filtered by industry at all."""
        return bool(self.industries or self.industry)

    def sees_region(self, region: str | None) -> bool:
        """The region part of `sees`."""
        return (not self.regions or any(under(region, p) for p in self.regions)) and (
            self.region is None or under(region, self.region)
        )

    def sees(self, region: str | None, industry: str | None) -> bool:
        """The Python twin of `sql`, for one record."""
        return (
            self.sees_region(region)
            and (not self.industries or industry in self.industries)
            and (not self.industry or industry in self.industry)
        )

    def sql(self, region_col: str = "region", industry_col: str = "industry", first: int = 1) -> tuple[str, list[Any]]:
        """A predicate over `region_col` and `industry_col` (column names or SQL expressions) with
        parameters numbered from `$first`, and the parameter values. 'TRUE' when nothing filters."""
        params: list[Any] = []

        def arg(value: Any) -> str:
            params.append(value)
            return f"${first + len(params) - 1}"

        def under_any(paths: Sequence[str]) -> str | None:
            if not paths:
                return None
            alternatives = []
            for path in (p.strip("/") for p in paths):
                if not path:
                    return None  # '' is every region
                alternatives.append(f"{region_col} = {arg(path)} OR {region_col} LIKE {arg(like_escape(path) + '/%')}")
            return "(" + " OR ".join(alternatives) + ")"

        clauses = [c for c in (under_any(self.regions), under_any([self.region] if self.region else [])) if c]
        for names in (self.industries, self.industry):
            if names:
                clauses.append(f"{industry_col} = ANY({arg(list(names))}::text[])")
        return (" AND ".join(clauses) or "TRUE"), params
