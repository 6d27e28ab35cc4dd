"""Redaction policies and findings as the service takes and answers them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from services.governance.inputs import no_nul
from shared.security import Sensitivity


class Mode(StrEnum):
    """What ingest does with a value a detector found."""

    MASK = "mask"  # [EMAIL], [CARD ****1234] ...
    HASH = "hash"  # [EMAIL:hmac:<16 hex>]: keyed, so equal values stay joinable
    REMOVE = "remove"  # the value (a whole JSON value: the key/value pair) is dropped
    KEEP_RESTRICTED = "keep_restricted"  # masked, the raw value kept for restricted readers


DEFAULT_MODE = Mode.MASK


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_source: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(no_nul),
    ]
    mode: Mode
    payload_sensitivity: Sensitivity | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    data_source: str
    mode: Mode
    payload_sensitivity: str | None
    version: int
    updated_at: datetime | None = None
    updated_by: str | None = None


def default_policy(data_source: str) -> Policy:
    return Policy(data_source, DEFAULT_MODE, None, 0)


@dataclass(frozen=True, slots=True)
class RestrictedValue:
    """A raw value kept under `keep_restricted`, for readers cleared `restricted` only."""

    kind: str
    path: str
    value: str
