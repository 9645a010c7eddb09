"""What the sectors of a disk are: the MBR, a partition's boot sector, a FAT, a
directory, or the file (and where in it) on FAT12/16/32 and ISO9660.

The map is built from the disk as the guest sees it (read through the same
block device) and answers "what is bytes [a, b)" as a list of named pieces,
so an int 13h log line can say `LBA 2151+4 -> /KERNEL.SYS [8..12)`.

Extents sit on levels: the disk layout (MBR, partitions), file-system
structures (boot sector, FATs, root directory, volume descriptors, El Torito
catalog) and files and directories. Within a level extents do not overlap; a
byte is named by the highest level that covers it, so a file inside an El
Torito image or a FAT partition inside a hybrid ISO is named by its path.
"""

from __future__ import annotations

import bisect
import struct
from typing import Callable, NamedTuple

SECTOR = 512
ISO_BLOCK = 2048
MAX_ENTRIES = 200_000   # directory entries walked per file system: a huge disk gets a partial map
MAX_DEPTH = 32
MAX_FAT_BYTES = 64 << 20

LEVEL_DISK, LEVEL_FS, LEVEL_FILES, LEVEL_INNER = range(4)
EXTENDED_TYPES = (0x05, 0x0F, 0x85)


class Extent(NamedTuple):
    start: int          # byte offset on the disk
    end: int
    label: str
    base: int | None    # byte offset within the named object at `start`; None: name it without a range


class Piece(NamedTuple):
    start: int
    end: int
    label: str
    offset: int | None  # byte offset within the named object, None if it has no inner position


class DiskMap:
    def __init__(self, read: Callable[[int, int], bytes], size: int):
        """`read(offset, length)` reads the disk as the guest sees it; `size` is its length in bytes."""
        self.read = read
        self.size = size
        self.levels: list[list[Extent]] = [[] for _ in range(4)]
        self.filesystems = 0
        self._starts: list[list[int]] = []
        self._build()

    # -- lookup ------------------------------------------------------------------------
    def pieces(self, start: int, end: int) -> list[Piece]:
        """What bytes [start, end) are, in order; runs of unnamed bytes are labelled ''."""
        out: list[Piece] = []
        pos = start
        while pos < end:
            found = None
            limit = end
            for level in range(len(self.levels) - 1, -1, -1):
                extents, starts = self.levels[level], self._starts[level]
                i = bisect.bisect_right(starts, pos) - 1
                if i >= 0 and extents[i].end > pos:
                    found = extents[i]
                    limit = min(limit, found.end)
                    break
                if i + 1 < len(extents):  # a higher level's next extent ends this piece
                    limit = min(limit, extents[i + 1].start)
            if found is None:
                out.append(Piece(pos, limit, "", None))
            else:
                offset = None if found.base is None else found.base + pos - found.start
                out.append(Piece(pos, limit, found.label, offset))
            pos = limit
        merged: list[Piece] = []
        for piece in out:
            last = merged[-1] if merged else None
            if last and last.label == piece.label and last.end == piece.start and \
                    (last.offset is None) == (piece.offset is None) and \
                    (last.offset is None or last.offset + last.end - last.start == piece.offset):
                merged[-1] = Piece(last.start, piece.end, last.label, last.offset)
            else:
                merged.append(piece)
        return merged

    def describe(self, start: int, end: int, unit: int) -> str:
        """`/KERNEL.SYS [8..12)`, `FAT 1 [0..9)`, `MBR`: the pieces of [start, end), positions in `unit`-byte sectors."""
        parts = []
        for piece in self.pieces(start, end):
            if not piece.label:
                parts.append("unallocated" if self.filesystems else "?")
                continue
            if piece.offset is None:
                parts.append(piece.label)
                continue
            first = piece.offset // unit
            last = -(-(piece.offset + piece.end - piece.start) // unit)
            parts.append(f"{piece.label} [{first}..{last})")
        return ", ".join(parts)

    # -- building ----------------------------------------------------------------------
    def _add(self, level: int, start: int, end: int, label: str, base: int | None = 0) -> None:
        end = min(end, self.size)
        if start < end:
            self.levels[level].append(Extent(start, end, label, base))

    def _finish(self) -> None:
        for level, extents in enumerate(self.levels):
            extents.sort()
            kept: list[Extent] = []
            for e in extents:  # a damaged FS can claim a cluster twice: the first claim keeps it
                if kept and e.start < kept[-1].end:
                    if e.end <= kept[-1].end:
                        continue
                    e = Extent(kept[-1].end, e.end, e.label,
                               None if e.base is None else e.base + kept[-1].end - e.start)
                kept.append(e)
            self.levels[level] = kept
        self._starts = [[e.start for e in extents] for extents in self.levels]

    def _safe_read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset >= self.size:
            return b""
        return self.read(offset, min(length, self.size - offset))

    def _build(self) -> None:
        try:
            head = self._safe_read(0, SECTOR)
            iso = self._safe_read(16 * ISO_BLOCK, ISO_BLOCK)
            filesystems: list[tuple[int, int, str]] = []  # (start, size, path prefix)
            if iso[1:6] == b"CD001":
                images = self._iso9660()
                if head[510:512] == b"\x55\xaa":
                    self._add(LEVEL_DISK, 0, SECTOR, "MBR", None)
                    filesystems = self._partitions(head, inner=True)
                for number, start in enumerate(images):  # a FAT image an El Torito entry boots (EFI, floppy)
                    name = "El Torito image" + (f" {number + 1}" if len(images) > 1 else "")
                    if _fat_bpb(self._safe_read(start, SECTOR)) is not None:
                        filesystems.append((start, self.size - start, name))
            elif _fat_bpb(head) is not None:
                filesystems = [(0, self.size, "")]
            elif head[510:512] == b"\x55\xaa":
                self._add(LEVEL_DISK, 0, SECTOR, "MBR", None)
                filesystems = self._partitions(head, inner=False)
            prefixed = len(filesystems) > 1
            for start, size, name in filesystems:
                inner = bool(self.levels[LEVEL_FILES])  # inside an ISO: named by image or partition
                self._fat(start, size, name, f"{name}:" if prefixed or inner else "",
                          LEVEL_INNER if inner else LEVEL_FILES)
        finally:
            self._finish()

    def _partitions(self, mbr: bytes, inner: bool) -> list[tuple[int, int, str]]:
        """Primary and logical partitions as extents; (start, size, name) of each to try as a file system."""
        found = []
        for i in range(4):
            status, ptype, first, count = mbr[446 + 16 * i], mbr[450 + 16 * i], \
                *struct.unpack_from("<II", mbr, 454 + 16 * i)
            if ptype == 0 or count == 0 or status not in (0, 0x80) or first * SECTOR >= self.size:
                continue
            if ptype == 0xEE:
                self._add(LEVEL_DISK, SECTOR, 2 * SECTOR, "GPT header", None)
                continue
            if ptype in EXTENDED_TYPES:
                found += self._logical(first)
                continue
            name = f"partition {i + 1}"
            if not inner or first:  # a hybrid ISO's partition 1 often starts at 0 and covers the ISO
                self._add(LEVEL_DISK, first * SECTOR, (first + count) * SECTOR, name)
            found.append((first * SECTOR, count * SECTOR, name))
        return found

    def _logical(self, extended: int) -> list[tuple[int, int, str]]:
        found, ebr_lba, number = [], extended, 5
        for _ in range(64):
            ebr = self._safe_read(ebr_lba * SECTOR, SECTOR)
            if ebr[510:512] != b"\x55\xaa":
                break
            self._add(LEVEL_DISK, ebr_lba * SECTOR, (ebr_lba + 1) * SECTOR, f"EBR of partition {number}", None)
            ptype, first, count = ebr[450], *struct.unpack_from("<II", ebr, 454)
            if ptype and count:
                start = (ebr_lba + first) * SECTOR
                name = f"partition {number}"
                self._add(LEVEL_DISK, start, start + count * SECTOR, name)
                found.append((start, count * SECTOR, name))
            next_type, next_first = ebr[466], struct.unpack_from("<I", ebr, 470)[0]
            if next_type not in EXTENDED_TYPES or not next_first:
                break
            ebr_lba, number = extended + next_first, number + 1
        return found

    # -- FAT -----------------------------------------------------------------------
    def _fat(self, start: int, size: int, name: str, prefix: str, files_level: int) -> None:
        bpb = _fat_bpb(self._safe_read(start, SECTOR))
        if bpb is None:
            return
        bps, spc, reserved, nfats, root_entries, total, fat_size, root_cluster = bpb
        who = f"{name} " if name else ""
        root_sectors = -(-root_entries * 32 // bps)
        fat_start = start + reserved * bps
        root_start = fat_start + nfats * fat_size * bps
        data_start = root_start + root_sectors * bps
        cluster_bytes = spc * bps
        clusters = (total - reserved - nfats * fat_size - root_sectors) // spc
        bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        self.filesystems += 1
        self._add(LEVEL_FS, start, start + bps, f"{who}boot sector", None)
        if reserved > 1:
            self._add(LEVEL_FS, start + bps, fat_start, f"{who}reserved sectors", bps)
        for i in range(nfats):
            self._add(LEVEL_FS, fat_start + i * fat_size * bps, fat_start + (i + 1) * fat_size * bps,
                      f"{who}FAT {i + 1}")
        if root_sectors:
            self._add(LEVEL_FS, root_start, data_start, f"{who}root directory")
        fat = self._safe_read(fat_start, min(fat_size * bps, MAX_FAT_BYTES))
        last_cluster = clusters + 1

        def next_cluster(c: int) -> int:
            if bits == 12:
                if c * 3 // 2 + 2 > len(fat):
                    return 0xFFFFFFF
                v = struct.unpack_from("<H", fat, c * 3 // 2)[0]
                v = v >> 4 if c & 1 else v & 0xFFF
                return v if v < 0xFF7 else 0xFFFFFFF
            if bits == 16:
                if c * 2 + 2 > len(fat):
                    return 0xFFFFFFF
                v = struct.unpack_from("<H", fat, c * 2)[0]
                return v if v < 0xFFF7 else 0xFFFFFFF
            if c * 4 + 4 > len(fat):
                return 0xFFFFFFF
            v = struct.unpack_from("<I", fat, c * 4)[0] & 0x0FFFFFFF
            return v if v < 0x0FFFFFF7 else 0xFFFFFFF

        def chain(first: int) -> list[int]:
            out, c, seen = [], first, set()
            while 2 <= c <= last_cluster and c not in seen:
                seen.add(c)
                out.append(c)
                c = next_cluster(c)
            return out

        def add_chain(cluster_list: list[int], label: str, length: int | None) -> None:
            offset = 0
            run_first = None
            for i, c in enumerate(cluster_list + [None]):
                if run_first is not None and (c is None or c != cluster_list[i - 1] + 1):
                    run_start = data_start + (run_first - 2) * cluster_bytes
                    run_end = data_start + (cluster_list[i - 1] - 1) * cluster_bytes
                    self._add(files_level, run_start, run_end, label, offset)
                    offset += run_end - run_start
                    run_first = None
                if c is not None and run_first is None:
                    run_first = c

        budget = [MAX_ENTRIES]

        def walk(entries: bytes, path: str, depth: int) -> None:
            long_parts: list[tuple[int, str]] = []
            for pos in range(0, len(entries) - 31, 32):
                if budget[0] <= 0:
                    return
                entry = entries[pos:pos + 32]
                if entry[0] == 0:
                    return
                if entry[0] == 0xE5:
                    long_parts = []
                    continue
                attr = entry[11]
                if attr == 0x0F:
                    seq = entry[0] & 0x1F
                    chars = entry[1:11] + entry[14:26] + entry[28:32]
                    text = chars.decode("utf-16-le", errors="replace").split("\x00")[0].replace("\uffff", "")
                    long_parts.append((seq, text))
                    continue
                if attr & 0x08:
                    long_parts = []
                    continue
                budget[0] -= 1
                short = _short_name(entry)
                name_ = "".join(t for _, t in sorted(long_parts)) if long_parts else short
                long_parts = []
                if short in (".", ".."):
                    continue
                first = struct.unpack_from("<H", entry, 26)[0]
                if bits == 32:
                    first |= struct.unpack_from("<H", entry, 20)[0] << 16
                size_ = struct.unpack_from("<I", entry, 28)[0]
                full = f"{path}/{name_}"
                clusters_ = chain(first)
                if attr & 0x10:
                    add_chain(clusters_, f"{prefix}{full}/ (directory)", None)
                    if depth < MAX_DEPTH and clusters_:
                        walk(b"".join(self._safe_read(data_start + (c - 2) * cluster_bytes, cluster_bytes)
                                      for c in clusters_), full, depth + 1)
                else:
                    add_chain(clusters_, f"{prefix}{full}", size_)

        if bits == 32:
            root = chain(root_cluster)
            add_chain(root, f"{who}root directory".strip(), None)
            data = b"".join(self._safe_read(data_start + (c - 2) * cluster_bytes, cluster_bytes) for c in root)
        else:
            data = self._safe_read(root_start, root_sectors * bps)
        walk(data, "", 0)

    # -- ISO9660 -------------------------------------------------------------------
    def _iso9660(self) -> list[int]:
        """Map the ISO9660 volume; returns where the El Torito boot images start."""
        self.filesystems += 1
        images: list[int] = []
        lba = 16
        pvd = None
        catalog = None
        while lba < 16 + 64:
            vd = self._safe_read(lba * ISO_BLOCK, ISO_BLOCK)
            if vd[1:6] != b"CD001":
                break
            if vd[0] == 1 and pvd is None:
                pvd = vd
            if vd[0] == 0 and vd[7:30].startswith(b"EL TORITO SPECIFICATION"):
                catalog = struct.unpack_from("<I", vd, 0x47)[0]
            lba += 1
            if vd[0] == 255:
                break
        self._add(LEVEL_FS, 0, 16 * ISO_BLOCK, "ISO9660 system area", None)
        self._add(LEVEL_FS, 16 * ISO_BLOCK, lba * ISO_BLOCK, "ISO9660 volume descriptors")
        if pvd is None:
            return images
        block = struct.unpack_from("<H", pvd, 128)[0] or ISO_BLOCK
        table_size, table_l, table_m = struct.unpack_from("<I", pvd, 132)[0], \
            struct.unpack_from("<I", pvd, 140)[0], struct.unpack_from(">I", pvd, 148)[0]
        self._add(LEVEL_FS, table_l * block, table_l * block + table_size, "ISO9660 path table (L)")
        self._add(LEVEL_FS, table_m * block, table_m * block + table_size, "ISO9660 path table (M)")
        if catalog is not None:
            self._add(LEVEL_FS, catalog * block, (catalog + 1) * block, "El Torito boot catalog")
            cat = self._safe_read(catalog * block, block)
            if cat[:1] == b"\x01":
                # the initial entry, then section entries (platforms such as EFI) after 90h/91h headers
                for at in range(32, len(cat) - 31, 32):
                    if cat[at] != 0x88:
                        continue
                    count, rba = struct.unpack_from("<HI", cat, at + 6)
                    media = cat[at + 1] & 0x0F
                    length = {1: 1200 * 1024, 2: 1440 * 1024, 3: 2880 * 1024}.get(media, max(count, 1) * SECTOR)
                    self._add(LEVEL_FS, rba * block, rba * block + length, "El Torito boot image")
                    images.append(rba * block)
        root = pvd[156:156 + 34]
        budget = [MAX_ENTRIES]
        seen: set[int] = set()

        def walk(extent: int, length: int, path: str, depth: int) -> None:
            if extent in seen or depth > MAX_DEPTH:
                return
            seen.add(extent)
            data = self._safe_read(extent * block, min(length, 16 << 20))
            pos = 0
            while pos < len(data) and budget[0] > 0:
                size = data[pos]
                if size == 0:  # records never cross a block: the rest of this one is padding
                    pos = (pos // block + 1) * block
                    continue
                record = data[pos:pos + size]
                pos += size
                if len(record) < 34:
                    break
                budget[0] -= 1
                name_len = record[32]
                raw = record[33:33 + name_len]
                if raw in (b"\x00", b"\x01"):
                    continue
                start, data_len, flags = struct.unpack_from("<I", record, 2)[0], \
                    struct.unpack_from("<I", record, 10)[0], record[25]
                name = _rock_ridge_name(record[33 + name_len + (1 - name_len % 2):]) or \
                    raw.decode("latin-1").split(";")[0].rstrip(".")
                full = f"{path}/{name}"
                end = start * block + -(-data_len // block) * block  # a file owns whole blocks
                if flags & 0x02:
                    self._add(LEVEL_FILES, start * block, end, f"{full}/ (directory)")
                    walk(start, data_len, full, depth + 1)
                elif data_len:
                    self._add(LEVEL_FILES, start * block, end, full)

        root_extent, root_len = struct.unpack_from("<I", root, 2)[0], struct.unpack_from("<I", root, 10)[0]
        self._add(LEVEL_FILES, root_extent * block, root_extent * block + root_len, "/ (root directory)")
        walk(root_extent, root_len, "", 0)
        return images


def _fat_bpb(sector: bytes):
    """(bytes/sector, sectors/cluster, reserved, FATs, root entries, total sectors, FAT size, root cluster), or None."""
    if len(sector) < SECTOR or sector[0] not in (0xEB, 0xE9, 0xE8):
        return None
    bps, spc, reserved, nfats, root_entries, total16, media, fat16 = struct.unpack_from("<HBHBHHBH", sector, 11)
    total32, fat32, _, _, root_cluster = struct.unpack_from("<IIHHI", sector, 32)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or reserved == 0 \
            or nfats not in (1, 2, 3, 4) or media < 0xF0 and media != 0x00:
        return None
    fat_size = fat16 or fat32
    total = total16 or total32
    if fat_size == 0 or total == 0:
        return None
    return bps, spc, reserved, nfats, root_entries, total, fat_size, root_cluster if not fat16 else 0


def _short_name(entry: bytes) -> str:
    base = entry[0:8].decode("cp437").rstrip()
    if entry[0] == 0x05:
        base = "\u00e5" + base[1:]
    ext = entry[8:11].decode("cp437").rstrip()
    return f"{base}.{ext}" if ext else base


def _rock_ridge_name(area: bytes) -> str | None:
    """The NM (alternate name) of a Rock Ridge system use area, if it has one."""
    pos, parts = 0, []
    while pos + 4 <= len(area):
        sig, length = area[pos:pos + 2], area[pos + 2]
        if length < 4:
            break
        if sig == b"NM":
            parts.append(area[pos + 5:pos + length].decode("utf-8", errors="replace"))
        pos += length
    return "".join(parts) or None
