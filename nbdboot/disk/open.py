"""Opening disks: a spec as a BlockDevice, and the disk `nbdboot run` boots.

    dev = open_device(spec)          # nbd://, nbds://, nbd+unix:// URI or a local path
    disk = open_guest_disk(source_factory, overlay=None, deploy_to=None,
                           map_path=None, sync="each", resume=True,
                           connections=4, since_bitmap=None)
    ...                     # a BlockDevice: hand it to the BIOS
    disk.copier             # None for overlays; .stats, .done, .error
    disk.close()            # stops the copier (resumable), syncs, closes all
    store = open_deploy(source_factory, target)   # the same store, its copier attached but not started
    store = open_store(source, target)            # source + target + map, no copier

`source_factory()` opens a new connection to the source each call (the copier
takes its own, several when the server advertises multi-conn). With neither
overlay nor deploy_to the source itself is returned. `source_spec` is the
source's URI: recorded in a new overlay (the default for `overlay commit`) and
needed by since_bitmap, which asks that URI for qemu:dirty-bitmap:NAME
(restore: `--restore-from URI --to TARGET` is deploy_to=TARGET with the backup
as source). `sync` is the store's policy (disk/store.py).
"""

from __future__ import annotations

import os

from nbdboot.disk.base import BlockDevice
from nbdboot.disk.blockmap import BlockMap, source_fingerprint
from nbdboot.disk.copier import attach_copier
from nbdboot.disk.dirty import dirty_extents
from nbdboot.disk.file import FileDevice, check_file_size_fits
from nbdboot.disk.overlay import open_overlay
from nbdboot.disk.store import StoreDevice, mark_clean_from_bitmap
from nbdboot.errors import UsageError


def open_device(spec: str, *, read_only: bool = False, create_size: int | None = None,
                lock: str | None = None, client_options: dict | None = None) -> BlockDevice:
    """A URI (nbd://, nbds://, nbd+unix://) or a local path as a BlockDevice; `lock` locks a local file
    exclusively for that role (an NBD export cannot be locked: its map is); client_options go to the
    NbdClient (retries, retry_delay, timeout...)."""
    if "://" in spec:
        from nbdboot.disk.nbd import NbdDevice  # the NBD client is optional for local-only use
        dev = NbdDevice(spec, **(client_options or {}))
        if read_only:
            dev.read_only = True
        return dev
    if create_size is not None and os.path.exists(spec):
        create_size = None
    return FileDevice(spec, read_only=read_only, create_size=create_size, lock=lock)


def default_map_path(target: str) -> str:
    if "://" in target:
        raise UsageError("an NBD target needs --map PATH for its block map")
    return target + ".nbdboot-map"


def open_store(source: BlockDevice, target_spec: str, *, map_path: str | None = None,
               sync: str = "each", resume: bool = True, block_size: int | None = None,
               source_spec: str = "", own_source: bool = True) -> StoreDevice:
    """Source + TARGET + map as a StoreDevice; a new map when none exists (or resume=False)."""
    map_path = map_path or default_map_path(target_spec)
    if "://" not in target_spec:
        check_file_size_fits(target_spec, source.size)
    fresh = not (resume and os.path.exists(map_path))
    blockmap = None
    if not fresh:
        # Check the map before the target is touched (or created).
        blockmap = BlockMap.open_for(map_path, source, overlay=False)
    try:
        target = open_device(target_spec, create_size=source.size, lock="deploy/restore target")
    except BaseException:
        if blockmap:
            blockmap.close()
        raise
    try:
        if fresh:
            blockmap = BlockMap.create(map_path, source.size, block_size=block_size, source=source_spec,
                                       fingerprint=source_fingerprint(source),
                                       replace=os.path.exists(map_path))   # --restart
        try:
            store = StoreDevice(source, target, blockmap, sync=sync, own_source=own_source)
        except BaseException:
            blockmap.close()
            raise
    except BaseException:
        target.close()
        raise
    store.fresh_map = fresh
    store.target_blank = fresh and target.created_blank
    return store


def open_deploy(source_factory, target_spec: str, *, map_path: str | None = None, sync: str = "each",
                resume: bool = True, connections: int = 4, since_bitmap: str | None = None,
                source_spec: str = "", block_size: int | None = None) -> StoreDevice:
    """Source + TARGET + map with its copier attached, not started: a deploy, or a restore that copies only
    the blocks the source's qemu:dirty-bitmap:`since_bitmap` marks (on a fresh map)."""
    dirty = None
    if since_bitmap:
        # Before any other connection: qemu-nbd serves one client at a time unless -e N.
        dirty = dirty_extents(source_spec, since_bitmap)
    source = source_factory()
    try:
        store = open_store(source, target_spec, map_path=map_path, sync=sync, resume=resume,
                           block_size=block_size, source_spec=source_spec)
    except BaseException:
        source.close()
        raise
    try:
        if dirty is not None and store.fresh_map:
            mark_clean_from_bitmap(store, dirty)
        attach_copier(store, source_factory, connections=connections)
    except BaseException:
        store.close()
        raise
    return store


def open_guest_disk(source_factory, *, overlay: str | None = None, deploy_to: str | None = None,
                    map_path: str | None = None, sync: str = "each", resume: bool = True,
                    connections: int = 4, since_bitmap: str | None = None,
                    source_spec: str = "", start_copier: bool = True) -> BlockDevice:
    """The disk `nbdboot run` boots: the source alone, with an overlay, or while deploying."""
    if overlay and deploy_to:
        raise UsageError("--overlay and --deploy-to cannot be combined")
    if deploy_to:
        store = open_deploy(source_factory, deploy_to, map_path=map_path, sync=sync, resume=resume,
                            connections=connections, since_bitmap=since_bitmap, source_spec=source_spec)
        if start_copier:
            try:
                store.copier.start()
            except BaseException:
                store.close()
                raise
        return store
    source = source_factory()
    if not overlay:
        return source
    try:
        return open_overlay(source, overlay, sync=sync, source_spec=source_spec)
    except BaseException:
        source.close()
        raise
