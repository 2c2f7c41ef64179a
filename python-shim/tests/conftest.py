import sys
from pathlib import Path

# `helpers` and `homeserver` sit beside the tests; `homeserver_config` and `matrix_client` are the
# demo's (examples/), so the tests run the same Synapse setup as `make demo`. The package under
# test is the installed one.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
