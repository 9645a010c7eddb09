"""Deploy and restore without booting: run the store's copier to the end, with progress.

`copy_to_target` is what `nbdboot deploy` and `nbdboot restore` do; `progress`
(console/progress.py's Progress, or anything with its update/finish/nbd_status)
is told how far the copy is.
"""

from __future__ import annotations

from nbdboot.disk.open import open_deploy, open_device
from nbdboot.disk.store import StoreDevice
from nbdboot.errors import EXIT_IO, NbdbootError
from nbdboot.nbd.client import status_listeners


class CopyFailed(NbdbootError):
    pass


def copy_to_target(source_spec: str, target_spec: str, *, map_path: str | None = None,
                   resume: bool = True, connections: int = 4, since_bitmap: str | None = None,
                   sync: str = "each", progress=None, block_size: int | None = None,
                   stop_after: int | None = None, client_options: dict | None = None) -> StoreDevice:
    """Copy SRC to TARGET through the store engine; returns the closed store (for its stats).

    stop_after (bytes copied) exists for tests of resuming: the copy stops there
    as an interrupted run would, with everything so far committed.
    """
    def factory():
        return open_device(source_spec, read_only=True, client_options=client_options)

    store = open_deploy(factory, target_spec, map_path=map_path, sync=sync, resume=resume,
                        connections=connections, since_bitmap=since_bitmap, source_spec=source_spec,
                        block_size=block_size)
    copier = store.copier
    try:
        if progress:
            status_listeners.append(progress.nbd_status)
        copier.stop_after = stop_after
        copier.start()
        while not copier.wait(0.1):
            if progress:
                progress.update(*copier.progress(), copier.stats)
            if stop_after is not None and copier.stats.copied_bytes >= stop_after:
                copier.stop()
                break
        if progress:
            progress.update(*copier.progress(), copier.stats, force=True)
            progress.finish()
        if copier.error is not None:
            err = copier.error
            exc = CopyFailed(f"copy stopped: {err} (run again to resume)")
            # NBD failures carry their exit code; anything else went wrong locally.
            exc.exit_code = getattr(err, "exit_code", None) or EXIT_IO
            raise exc
    finally:
        if progress and progress.nbd_status in status_listeners:
            status_listeners.remove(progress.nbd_status)
        store.close()
    return store
