"""REST routes of the sharing service: download a bundle this instance exported."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from services.sharing import service
from shared.audit import audit
from shared.security import Principal, Scope
from shared.web import Session, require

router = APIRouter(prefix="/sharing/v1")


@router.get("/bundles/{bundle_id}", response_class=FileResponse)
async def download_bundle(
    bundle_id: str,
    session: Session,
    principal: Principal = Depends(require(Scope.EXPORTS_CREATE)),
) -> FileResponse:
    """The bundle's tar.gz, for a caller who may see every case in it (its teams and its
    highest sensitivity); 404 otherwise, as for a bundle that does not exist."""
    row = await service.downloadable_bundle(session, bundle_id, principal)
    audit(session, principal, "sharing.download_bundle", f"bundle:{row.bundle_id}", details={})
    return FileResponse(
        row.path or "",
        media_type="application/gzip",
        filename=os.path.basename(row.path or f"{row.bundle_id}.tar.gz"),
        headers={"X-Bundle-Manifest-Sha256": row.manifest_sha256 or ""},
    )
