"""``kill -USR1 <worker pid>``: the worker logs where every asyncio task is waiting.

A worker that stops making progress with every thread idle is waiting for
something that never completes (an acknowledgement, a buffer to drain, a
lock). py-spy shows only the idle event loop; the tasks' own stacks show
which ``await`` it is.
"""

from __future__ import annotations

import asyncio
import logging
import signal

log = logging.getLogger(__name__)


def install_task_dump(loop: asyncio.AbstractEventLoop) -> None:
    """Log every task's stack when the process receives SIGUSR1."""
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("%s", task_stacks()))


def task_stacks(limit: int = 12) -> str:
    """Each pending task of the running loop and the frames it waits in, outermost first."""
    tasks = sorted((task for task in asyncio.all_tasks() if not task.done()), key=lambda t: t.get_name())
    lines = [f"{len(tasks)} asyncio task(s):"]
    for task in tasks:
        lines.append(f"  task {task.get_name()}:")
        # Frame by frame: Task.print_stack fails on frames without a line number (Python 3.11).
        lines += [f"    {f.f_code.co_qualname} ({f.f_code.co_filename}:{f.f_lineno})" for f in task.get_stack(limit=limit)]
    return "\n".join(lines)
