"""Workers of one agent sharing a host: each its own state directory, a restart the first free one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streams.liveness import claim_state_dir
from streams.settings import load_settings

HOLD = """
import sys, time
from pathlib import Path
from streams.liveness import claim_state_dir
from streams.settings import load_settings
print(claim_state_dir(load_settings(), "g", Path(sys.argv[1])), flush=True)
time.sleep(60)
"""


def test_each_worker_on_a_host_holds_its_own_state_dir_and_a_dead_workers_dir_is_taken_again(tmp_path: Path) -> None:
    tables = tmp_path / "tables" / "g"
    env = {**os.environ, "KAPPA_STATE_DIR": str(tmp_path)}
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tables)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == str(tables / "worker-0")
        settings = load_settings(env)
        assert claim_state_dir(settings, "g", tables) == tables / "worker-1"  # worker-0 is held
        assert tables.is_dir()
    finally:
        other.kill()
        other.wait()
    assert claim_state_dir(settings, "g", tables) == tables / "worker-0"  # released when its holder died
