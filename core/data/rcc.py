"""Reading a Qt resource bundle (``.rcc``): GCompris ships its photographs inside such bundles.

Hand-written because no maintained Python library reads the binary ``.rcc`` format (Qt's ``rcc`` tool and PySide's
``pyside6-rcc`` only write it). The format, as Qt's ``qresource.cpp`` reads it, all integers big-endian:

* header: ``b"qres"``, version, tree offset, data offset, names offset (4 bytes each; version 3 adds 4 bytes of flags);
* tree: one node per entry, 14 bytes (version 1) or 22 (version 2 and later add an 8-byte modification time): name
  offset (4), flags (2: 1 zlib-compressed, 2 directory, 4 zstd-compressed), then for a directory its child count (4)
  and first child's node index (4), for a file its country (2), language (2) and data offset (4); node 0 is the root;
* names: length in UTF-16 code units (2), hash (4), the name in UTF-16BE;
* data: length (4), then the bytes; a zlib-compressed entry starts with its uncompressed length (4, ``qCompress``).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Container
from pathlib import Path

from core.errors import RankscopeError

MAGIC = b"qres"
COMPRESSED, DIRECTORY, ZSTD = 1, 2, 4


def read_rcc(path: Path, wanted: Container[str] | None = None) -> dict[str, bytes]:
    """Every file entry of the bundle at ``path`` (or only those in ``wanted``) as ``{"dir/name": content}``.

    Parameters
    ----------
    path : a ``.rcc`` file (format versions 1 to 3).
    wanted : the entries to return; the others are walked over (the whole tree is checked) but not decompressed.

    Raises
    ------
    RankscopeError
        The file does not read, is not a bundle, or is truncated or corrupt (the message names it), or a wanted
        entry is zstd-compressed, which Python's standard library cannot decompress before 3.14.
    """
    try:
        blob = Path(path).read_bytes()
        magic, version, tree, data, names = struct.unpack_from(">4sIIII", blob)
        if magic != MAGIC:
            raise ValueError(f"no Qt resource header (it starts {blob[:4]!r})")
        if not 1 <= version <= 3:
            raise ValueError(f"format version {version}, where 1 to 3 are known")
        node_size = 14 if version == 1 else 22
        entries: dict[str, bytes] = {}
        todo, seen = [(0, "")], set()
        while todo:
            index, prefix = todo.pop()
            if index in seen:
                raise ValueError(f"tree node {index} is reached twice")
            seen.add(index)
            offset = tree + index * node_size
            if offset + node_size > len(blob):
                raise ValueError(f"tree node {index} lies past the end of the file")
            name_offset, flags = struct.unpack_from(">IH", blob, offset)
            entry = f"{prefix}{_name(blob, names + name_offset, index)}" if index else ""  # the root has no name
            if flags & DIRECTORY:
                count, first = struct.unpack_from(">II", blob, offset + 6)
                if tree + (first + count) * node_size > len(blob):
                    raise ValueError(f"{entry or 'the root'} has children past the end of the file")
                todo += [(child, f"{entry}/" if entry else "") for child in range(first, first + count)]
            elif wanted is None or entry in wanted:
                entries[entry] = _content(blob, data + struct.unpack_from(">I", blob, offset + 10)[0], flags, entry)
        return entries
    except (OSError, struct.error, ValueError, zlib.error) as err:  # UnicodeDecodeError is a ValueError
        raise RankscopeError(f"{path} is not a readable Qt resource bundle: {err}") from None


def _slice(blob: bytes, start: int, size: int, what: str) -> bytes:
    """``size`` bytes of ``blob`` from ``start``, or a ValueError saying ``what`` is cut short."""
    if start + size > len(blob):
        raise ValueError(f"the {what} is truncated ({max(0, len(blob) - start)} of {size} bytes)")
    return blob[start:start + size]


def _name(blob: bytes, offset: int, index: int) -> str:
    """The name at ``offset`` of the names: its length in UTF-16 units, a hash, then the UTF-16BE units."""
    length = struct.unpack_from(">H", blob, offset)[0]
    return _slice(blob, offset + 6, 2 * length, f"name of tree node {index}").decode("utf-16-be")


def _content(blob: bytes, offset: int, flags: int, entry: str) -> bytes:
    """The bytes of the entry whose data starts at ``offset``, decompressed."""
    content = _slice(blob, offset + 4, struct.unpack_from(">I", blob, offset)[0], f"content of {entry}")
    if flags & ZSTD:
        raise ValueError(f"{entry} is zstd-compressed, which this reader does not decompress")
    return zlib.decompress(content[4:]) if flags & COMPRESSED else content
