import sys
from pathlib import Path

# the served-worker helpers live beside tests/workers' tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workers"))
