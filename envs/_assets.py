"""Where the task models live: third_party_assets/ at the repository root."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(os.environ.get("ROBOJAX_ASSETS", Path(__file__).resolve().parent.parent / "third_party_assets"))


def asset_path(*parts: str) -> Path:
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"robojax asset {path} not found. Install robojax from a source checkout"
            " (pip install -e .) or point ROBOJAX_ASSETS at the third_party_assets/ folder."
        )
    return path
