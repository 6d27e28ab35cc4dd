"""Signed checkpoints of the audit chain's head, kept outside the database.

A checkpoint is a compact JWS (alg Ed25519, RFC 9864; signed with joserfc, authlib's JOSE
library) of `{"seq", "hash", "at", "kid"}`, in a file
`checkpoint-<seq>.jws` of the checkpoint directory. Whoever can rewrite the database can
recompute every hash of the chain; they cannot sign a checkpoint without the audit key, and
cannot remove the checkpoints already written elsewhere. So a truncated tail or a rewritten
chain disagrees with the last checkpoint.

The signing key is the audit trail's own (never the OAuth signing keys, which rotate and are
published): an Ed25519 JWK generated on first use in `$FAILCAT_DATA_DIR/audit/` (mode 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from shared.db import utcnow
from shared.errors import BadUserInput

KEY_FILE = "audit-signing-key.jwk"
ALG = "Ed25519"  # RFC 9864: the fully specified name of EdDSA over Ed25519
NAME = re.compile(r"checkpoint-(\d+)\.jws")


class CheckpointError(BadUserInput):
    """The checkpoint directory or key cannot be used (a configuration error)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    kid: str
    path: Path


def load_key(key_dir: Path, *, create: bool) -> OKPKey | None:
    """The audit signing key; made on first use when `create` (O_EXCL: two processes starting
    together keep the one written first)."""
    path = key_dir / KEY_FILE
    if not path.exists():
        if not create:
            return None
        key_dir.mkdir(parents=True, exist_ok=True)
        key = OKPKey.generate_key("Ed25519")
        body = json.dumps(key.as_dict(private=True))
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(body)
    try:
        return OKPKey.import_key(json.loads(path.read_text()))
    except (OSError, ValueError, JoseError) as exc:
        raise CheckpointError(f"cannot read the audit signing key {path}: {exc}") from None


def kid_of(key: OKPKey) -> str:
    return str(key.thumbprint())


def write(checkpoint_dir: Path, key: OKPKey, seq: int, head_hash: str) -> Checkpoint:
    """Sign (seq, hash) now and write it; the file appears whole or not at all."""
    at = utcnow().isoformat(timespec="microseconds")
    kid = kid_of(key)
    payload = json.dumps({"seq": seq, "hash": head_hash, "at": at, "kid": kid}).encode()
    token = jws.serialize_compact({"alg": ALG, "kid": kid}, payload, key, algorithms=[ALG])
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = checkpoint_dir / f"checkpoint-{seq:015d}.jws"
        partial = path.with_suffix(".partial")
        partial.write_text(token)
        os.replace(partial, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in {checkpoint_dir}: {exc}") from None
    return Checkpoint(seq, head_hash, at, kid, path)


def read_all(checkpoint_dir: Path, key: OKPKey | None) -> tuple[list[Checkpoint], list[str]]:
    """Every checkpoint in seq order, and the problems found (a file whose signature does not
    verify under the audit key, or that is not a checkpoint at all)."""
    found: list[Checkpoint] = []
    problems: list[str] = []
    if not checkpoint_dir.exists():  # none signed yet
        return found, problems
    if not checkpoint_dir.is_dir():
        # A misconfigured directory must not read as "no checkpoint yet": verify would pass
        # a chain with a cut-off tail that the real checkpoints would catch.
        raise CheckpointError(f"the checkpoint directory {checkpoint_dir} is not a directory")
    for path in sorted(checkpoint_dir.iterdir()):
        if not NAME.fullmatch(path.name):
            continue
        if key is None:
            problems.append(f"{path.name}: no audit key to verify it with")
            continue
        try:
            data: dict[str, Any] = json.loads(
                jws.deserialize_compact(path.read_text(), key, algorithms=[ALG]).payload
            )
            seq, head_hash = int(data["seq"]), str(data["hash"])
        except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
            problems.append(f"{path.name}: not a valid signed checkpoint ({type(exc).__name__})")
            continue
        found.append(Checkpoint(seq, head_hash, str(data.get("at")), str(data.get("kid")), path))
    found.sort(key=lambda c: c.seq)
    return found, problems


def latest_seq(checkpoint_dir: Path) -> int:
    """The seq of the newest checkpoint file (by name; 0 when there is none)."""
    if not checkpoint_dir.is_dir():
        return 0
    seqs = [int(m.group(1)) for p in checkpoint_dir.iterdir() if (m := NAME.fullmatch(p.name))]
    return max(seqs, default=0)
