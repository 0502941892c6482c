"""Where the repository keeps its shipped assets and its caches."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
MODEL_DIR = ASSETS / "model"
IMAGES_DIR = ASSETS / "images"
CACHE_DIR = Path(os.environ.get("ISEG_CACHE", REPO_ROOT / ".cache"))
BUILD_DIR = REPO_ROOT / "build"
