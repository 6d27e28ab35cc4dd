"""The schema as a contract: `python -m services.gateway.sdl` writes schema.graphql at the repo
root (`--check` exits 1 when the file differs from the code's schema)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SDL_PATH = Path(__file__).resolve().parents[2] / "schema.graphql"


def current_sdl() -> str:
    from services.gateway.schema import build_schema

    # Development mode: production only adds validation rules, the types are the same.
    return build_schema(production=False).as_str().rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--path", type=Path, default=SDL_PATH)
    args = parser.parse_args(argv)
    sdl = current_sdl()
    if args.check:
        if not args.path.exists() or args.path.read_text() != sdl:
            print(f"{args.path} is out of date: run `make schema`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(sdl)
    print(f"wrote {args.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
