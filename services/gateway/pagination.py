"""Page-size limits shared by every connection."""

from services.catalog.limits import MAX_PAGE_SIZE
from shared.errors import BadUserInput, FieldError


def check_page_size(first: int, limit: int = MAX_PAGE_SIZE) -> None:
    if not 1 <= first <= limit:
        raise BadUserInput(
            f"first must be between 1 and {limit}", [FieldError("first", f"between 1 and {limit}")]
        )
