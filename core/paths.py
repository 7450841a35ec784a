"""Where the shipped assets live, and the cache of what is derived from installed files."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
CACHE = ROOT / ".rankscope-cache"  # git-ignored; derived files that are slow to rebuild (the dequantised SmolLM2)
