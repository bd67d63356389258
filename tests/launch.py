"""Launcher processes in tests (deepspeed, sbatch): their own process group, always killed at the end."""

from __future__ import annotations

import os
import signal
import subprocess

DISTRIBUTED_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launcher_env(**extra: str) -> dict[str, str]:
    """This process's environment without the one-rank variables in-process tests leave behind, plus
    ``extra``: a launcher sets those per rank itself."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARS}
    return env | extra


def run_group(cmd: list[str], *, cwd, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``cmd`` in a new session; returns (exit code, stdout and stderr). The whole process group is
    killed afterwards, whether the command ended, failed or timed out, so no rank outlives the test."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, output
