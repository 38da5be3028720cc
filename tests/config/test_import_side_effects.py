"""Importing kiln changes nothing process-wide: no warnings filter, no logging handler, no
environment variable (issue 16, item 6). Checked in a fresh interpreter, where nothing else has
imported kiln yet."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, logging, os, sys, warnings
before = (len(warnings.filters), len(logging.getLogger().handlers), dict(os.environ))
import kiln, kiln.config, kiln.config.schema, kiln.cli.main
from kiln.config import load_config
load_config(None, [])
after = (len(warnings.filters), len(logging.getLogger().handlers), dict(os.environ))
print(json.dumps({"filters": [before[0], after[0]], "handlers": [before[1], after[1]],
                  "env_changed": sorted(k for k in set(before[2]) | set(after[2])
                                        if before[2].get(k) != after[2].get(k))}))
"""


def test_importing_kiln_and_loading_a_config_leaves_process_state_alone() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["filters"][1] == seen["filters"][0], "a warnings filter was installed at import"
    assert seen["handlers"][1] == seen["handlers"][0], "a logging handler was installed at import"
    assert seen["env_changed"] == []
