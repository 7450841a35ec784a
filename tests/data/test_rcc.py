"""The Qt resource bundle reader: every entry of a bundle built here byte by byte, and corrupt bundles named."""
from __future__ import annotations

import struct
import zlib

import pytest

from core.data.rcc import read_rcc
from core.errors import RankscopeError

FILES = {
    "a.txt": b"top-level",
    "photos/cat.webp": b"RIFF....WEBPVP8 " + bytes(range(256)),
    "photos/deeper/dog.webp": b"",
    "photos/deeper/notes.qml": b"import QtQuick 2.12\n" * 40,  # stored compressed
    "\u00e9t\u00e9/\u732b.txt": "non-ASCII names".encode(),
}
COMPRESSED = {"photos/deeper/notes.qml"}


def build_rcc(files: dict[str, bytes], compressed: set[str] = COMPRESSED, version: int = 3,
              zstd: bool = False) -> bytes:
    """A bundle as Qt's ``rcc`` lays one out: header, data, names, then the tree (each directory's children
    numbered together, breadth first)."""
    root: dict = {}
    for path, content in files.items():
        *folders, leaf = path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = content
    nodes, tree, data, names = [("", root, "")], [], bytearray(), bytearray()
    for name, item, path in nodes:  # grows as directories are met
        name_offset = len(names)
        names += struct.pack(">HI", len(name.encode("utf-16-be")) // 2, 0) + name.encode("utf-16-be")  # hash unread
        if isinstance(item, dict):
            node = struct.pack(">IHII", name_offset, 2, len(item), len(nodes))
            nodes += [(k, v, f"{path}/{k}" if path else k) for k, v in item.items()]
        else:
            flags = (4 if zstd else 1) if path in compressed else 0
            blob = struct.pack(">I", len(item)) + zlib.compress(item) if flags else item
            node = struct.pack(">IHHHI", name_offset, flags, 0, 0, len(data))
            data += struct.pack(">I", len(blob)) + blob
        tree.append(node + (b"\0" * 8 if version >= 2 else b""))
    header = 20 + (4 if version >= 3 else 0)
    offsets = (header + len(data) + len(names), header, header + len(data))  # tree, data, names
    flags = b"\0" * 4 if version >= 3 else b""
    return struct.pack(">4sIIII", b"qres", version, *offsets) + flags + bytes(data) + bytes(names) + b"".join(tree)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_entry_is_read_with_its_content(tmp_path, version):
    path = tmp_path / "bundle.rcc"
    path.write_bytes(build_rcc(FILES, version=version))
    assert read_rcc(path) == FILES


def test_only_the_wanted_entries_are_returned(tmp_path):
    path = tmp_path / "bundle.rcc"
    path.write_bytes(build_rcc(FILES, zstd=True))  # the unwanted compressed entry is never decompressed
    assert read_rcc(path, {"photos/cat.webp", "photos/deeper/dog.webp", "missing"}) == {
        "photos/cat.webp": FILES["photos/cat.webp"], "photos/deeper/dog.webp": b""}
    with pytest.raises(RankscopeError, match="notes.qml is zstd-compressed"):
        read_rcc(path, {"photos/deeper/notes.qml"})


def _corrupt(blob: bytes) -> dict[str, bytes]:
    middle = len(blob) // 2
    tree = struct.unpack_from(">I", blob, 8)[0]
    looped = bytearray(blob)
    struct.pack_into(">II", looped, tree + 6, 1, 0)  # the root is its own child
    huge = bytearray(blob)
    struct.pack_into(">I", huge, tree + 6, 2**32 - 1)  # four billion children
    bad_zlib = blob.replace(zlib.compress(FILES["photos/deeper/notes.qml"])[:8], b"\0" * 8)
    return {"empty": b"", "not a bundle": b"GIF89a" + blob[6:], "version 9": blob[:4] + b"\0\0\0\x09" + blob[8:],
            "cut in the middle": blob[:middle], "cut at the end": blob[:-1], "looped": bytes(looped),
            "four billion children": bytes(huge), "bad zlib": bad_zlib}


@pytest.mark.parametrize("case", list(_corrupt(build_rcc(FILES))))
def test_a_corrupt_or_truncated_bundle_is_named_in_one_error(tmp_path, case):
    path = tmp_path / f"{case.replace(' ', '-')}.rcc"
    path.write_bytes(_corrupt(build_rcc(FILES))[case])
    with pytest.raises(RankscopeError, match=rf"^{path} is not a readable Qt resource bundle: .+") as err:
        read_rcc(path)
    assert "\n" not in str(err.value)


def test_every_cut_of_a_bundle_is_refused(tmp_path):
    blob, path = build_rcc(FILES), tmp_path / "cut.rcc"
    for length in range(0, len(blob), 7):
        path.write_bytes(blob[:length])
        with pytest.raises(RankscopeError, match="cut.rcc is not a readable Qt resource bundle"):
            read_rcc(path)
