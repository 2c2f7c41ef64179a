import sys
from pathlib import Path

# `helpers` sits beside the tests; the package under test is the installed one.
sys.path.insert(0, str(Path(__file__).parent))
