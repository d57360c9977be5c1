"""Whether a process is alive: the one rule the hub's leases and the
scale-out services script share."""
import os


def process_is_alive(pid: int) -> bool:
    """True while ``pid`` runs.  A zombie counts as dead: some containers'
    init never reaps, and an unreaped process holds nothing any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
