"""Mutated small cartridges, and the contract ``ctcimg score`` must meet on every one.

Shared by ``tests/test_fuzz.py`` (a fixed, bounded subset in CI) and
``benchmarks/fuzz.py`` (thousands of cases on demand). A case is a mutation family and a
seed: the seed draws a small valid cartridge (see ``conftest.make_cartridge``) and one
mutation of the family, so ``(family, seed)`` reproduces a case exactly.

The contract: ``ctcimg score CARTRIDGE -o OUT`` either exits 0 with a complete result
(summary.json strict JSON, events.csv) and nothing on stderr (no warnings), or exits 2
with exactly one line on stderr naming a file of the cartridge, and OUT left empty. It
never raises out of ``main``, never hangs (a timeout) and stays within a memory budget
(an address-space limit while the case runs).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from conftest import make_cartridge

from ctcimg.cli import main

#: Seconds a case may take before it counts as a hang.
CASE_TIMEOUT_S = 60
#: Address space a case may add to the process before allocation fails.
CASE_MEMORY_BYTES = 2 << 30

CARTRIDGE_ID = "01140637.1.1"
XML_NAME = "01140637.xml"

NASTY_NUMBERS = (
    "inf", "-inf", "Infinity", "nan", "NaN", "1e999", "-1e999", "1e-999", "-1", "0", "-0",
    "1e9", "1000000000", "4294967297", "9" * 400, "2.5", "0.5", "3.0", "+3", " 3 ", "",
    "²", "٣", "３", "−3", "0x10", "1_0", "3,5", "1e", "e3", ".", "-", "3 4", "\x00",
    "12345678901234567890", "1.7976931348623157e308", "2", "1", "7",
)
NASTY_FLOATS = (math.inf, -math.inf, math.nan, -1.0, 0.0, 0.5, 4095.0, 65535.0, 65536.0,
                1e30, -1e30, 1e-30, 3e38)


@dataclass(frozen=True)
class Case:
    """One fuzz case: the mutation family and the seed drawing the cartridge and mutation."""

    family: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family}:{self.seed}"


@dataclass(frozen=True)
class Outcome:
    """What a case did: ``status`` is ``"result"``, ``"error"`` (exit 2) or ``"failed"``."""

    case: Case
    mutation: str
    status: str
    detail: str

    @property
    def handled(self) -> bool:
        return self.status != "failed"


# --- the base cartridge -----------------------------------------------------------------


def _base_cartridge(root: Path, rng: random.Random) -> Path:
    """A small valid cartridge, varied by ``rng`` (size, grid, bits, encoding, events)."""
    rows, cols = rng.choice([(2, 3), (1, 4), (3, 2), (2, 2)])
    shape = (rng.choice([40, 48]), rng.choice([56, 64]))
    bits, encoding = rng.choice([(16, "stretch"), (16, "stretch"), (8, "stretch"),
                                 (16, "offset"), (16, "raw")])
    events = [(1, 5, 6, 15, 16, True), (rows * cols, 2, 3, 9, 12, False)]
    folder, _ = make_cartridge(root, CARTRIDGE_ID, rows=rows, cols=cols, shape=shape,
                               bits=bits, encoding=encoding, seed=rng.randrange(2**31),
                               events=events)
    return folder


def _frames(cartridge: Path) -> list[Path]:
    return sorted((cartridge / "processed").glob("*.tif"))


def _pick_frame(cartridge: Path, rng: random.Random) -> Path:
    """The first frame half the time (its header decides the layout), else any frame."""
    frames = _frames(cartridge)
    return frames[0] if rng.random() < 0.5 else rng.choice(frames)


# --- TIFF bytes -------------------------------------------------------------------------


def mutate_tiff_header(cartridge: Path, rng: random.Random) -> str:
    """The 8-byte TIFF header: byte order, magic number, first IFD offset, or truncation."""
    path = _pick_frame(cartridge, rng)
    data = bytearray(path.read_bytes())
    size = len(data)
    field = rng.choice(["order", "magic", "ifd", "truncate"])
    if field == "order":
        data[0:2] = rng.choice([b"MM", b"XX", b"\0\0", b"IM", b"ii"])
        return f"{path.name}: byte order {bytes(data[0:2])!r}"
    if field == "magic":
        magic = rng.choice([0, 43, 0xFFFF, 0x2A00, rng.randrange(65536)])
        struct.pack_into("<H", data, 2, magic)
        path.write_bytes(bytes(data))
        return f"{path.name}: magic {magic}"
    if field == "ifd":
        offset = rng.choice([0, 1, 7, 8, size - 1, size, size + 100, 2**32 - 1,
                             rng.randrange(size), rng.randrange(size) | 1])
        struct.pack_into("<I", data, 4, offset)
        path.write_bytes(bytes(data))
        return f"{path.name}: first IFD at {offset}"
    keep = rng.choice([0, 1, 4, 7, 8, 9, rng.randrange(size)])
    path.write_bytes(bytes(data[:keep]))
    return f"{path.name}: truncated to {keep} bytes"


def mutate_tiff_bytes(cartridge: Path, rng: random.Random) -> str:
    """Anywhere in a frame file: bit flips, an overwritten run of bytes, truncation, junk."""
    path = _pick_frame(cartridge, rng)
    data = bytearray(path.read_bytes())
    kind = rng.choice(["flips", "chunk", "truncate", "append", "empty"])
    if kind == "flips":
        count = rng.choice([1, 2, 8, 64])
        for _ in range(count):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        what = f"{count} bit flips"
    elif kind == "chunk":
        start = rng.randrange(len(data))
        length = rng.choice([4, 12, 64, 512])
        fill = rng.choice([b"\0", b"\xff", bytes([rng.randrange(256)])])
        data[start:start + length] = fill * len(data[start:start + length])
        what = f"{length} bytes at {start} set to {fill!r}"
    elif kind == "truncate":
        cut = rng.randrange(len(data))
        data = data[:cut]
        what = f"truncated to {cut} bytes"
    elif kind == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))
        what = "junk appended"
    else:
        data = bytearray()
        what = "emptied"
    path.write_bytes(bytes(data))
    return f"{path.name}: {what}"


def _ifd_offsets(path: Path) -> list[int]:
    with tifffile.TiffFile(path) as tif:
        return [page.offset for page in tif.pages]


def mutate_ifd_entry(cartridge: Path, rng: random.Random) -> str:
    """One page directory: an entry's tag, type, count or value, the entry count, or the
    link to the next directory (including loops back)."""
    path = _pick_frame(cartridge, rng)
    offsets = _ifd_offsets(path)
    data = bytearray(path.read_bytes())
    size = len(data)
    page = rng.randrange(len(offsets))
    ifd = offsets[page]
    (n_entries,) = struct.unpack_from("<H", data, ifd)
    field = rng.choice(["tag", "type", "count", "value", "value", "entries", "next"])
    where = f"{path.name} page {page + 1}"
    if field == "entries":
        value = rng.choice([0, 1, n_entries + 1, 0xFFFF])
        struct.pack_into("<H", data, ifd, value)
        path.write_bytes(bytes(data))
        return f"{where}: entry count {value}"
    if field == "next":
        link = ifd + 2 + 12 * n_entries
        value = rng.choice([ifd, offsets[0], size, size + 1, 2**32 - 1, rng.randrange(size)])
        struct.pack_into("<I", data, link, value)
        path.write_bytes(bytes(data))
        return f"{where}: next IFD {value}"
    entry = ifd + 2 + 12 * rng.randrange(n_entries)
    (tag,) = struct.unpack_from("<H", data, entry)
    if field == "tag":
        value = rng.choice([256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 322, 339,
                            754, 755, 756, 0, 0xFFFF, rng.randrange(65536)])
        struct.pack_into("<H", data, entry, value)
    elif field == "type":
        value = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 99])
        struct.pack_into("<H", data, entry + 2, value)
    elif field == "count":
        value = rng.choice([0, 1, 2, 3, 4, 1000, 2**31, 2**32 - 1, rng.randrange(2**32)])
        struct.pack_into("<I", data, entry + 4, value)
    else:
        value = rng.choice([0, 1, 2, 8, 16, 17, 32, 64, 4096, 16385, 65535, size - 1, size,
                            2**31, 2**32 - 1, rng.randrange(2**32)])
        struct.pack_into("<I", data, entry + 8, value)
    path.write_bytes(bytes(data))
    return f"{where}: tag {tag} {field} -> {value}"


# --- rewritten frames -------------------------------------------------------------------


def _stored_pages(path: Path) -> tuple[list[np.ndarray], list[dict[int, object]]]:
    with tifffile.TiffFile(path) as tif:
        pages = [page.asarray() for page in tif.pages]
        tags = [{code: page.tags[code].value for code in (754, 755, 756) if code in page.tags}
                for page in tif.pages]
    return pages, tags


def _write_frame(path: Path, pages: list[np.ndarray], extratags: list[list[tuple]] | None = None,
                 **options) -> None:
    options.setdefault("photometric", "minisblack")
    with tifffile.TiffWriter(path) as writer:
        for index, page in enumerate(pages):
            writer.write(page, extratags=extratags[index] if extratags else [], **options)


_TAG_TYPES = ("H", "I", "h", "i", "f", "d", "B", "b", 5, 10, "s", 16, 17)


def _tag_value(kind, rng: random.Random, count: int):
    """A value of TIFF type ``kind`` (tifffile notation), often an extreme one."""
    def one():
        pick = rng.choice(NASTY_FLOATS + (rng.uniform(0, 5000),))
        if kind in ("f", "d"):
            return pick
        if kind in (5, 10):  # (numerator, denominator), unsigned or signed 32-bit
            top = 2**32 - 1 if kind == 5 else 2**31 - 1
            return (rng.choice([0, 1, 3, 4095, top, -top if kind == 10 else 0]),
                    rng.choice([0, 1, 2, 7]))
        info = np.iinfo({"H": np.uint16, "I": np.uint32, "h": np.int16, "i": np.int32,
                         "B": np.uint8, "b": np.int8, 16: np.uint64, 17: np.int64}[kind])
        if not math.isfinite(pick):
            return rng.choice([info.min, info.max])
        return int(min(max(pick, info.min), info.max))

    if kind == "s":
        return rng.choice(["inf", "1234", "", "nan", "-5", "4095" * 40])
    if count == 1:
        return one()
    values = [one() for _ in range(count)]
    if kind in (5, 10):
        return tuple(v for pair in values for v in pair)
    return tuple(values)


def mutate_stretch_tag(cartridge: Path, rng: random.Random) -> str:
    """Tags 754-756 of one frame: type, count, values (inf, nan, negative, huge, swapped),
    or a tag left out."""
    path = _pick_frame(cartridge, rng)
    pages, tags = _stored_pages(path)
    targets = range(len(pages)) if rng.random() < 0.5 else [rng.randrange(len(pages))]
    extratags = []
    changes = []
    for index in range(len(pages)):
        low, high = tags[index].get(755, 0), tags[index].get(756, 4095)
        entries = {754: (754, "H", 1, 1, True), 755: (755, "H", 1, low, True),
                   756: (756, "H", 1, high, True)}
        if index in targets:
            action = rng.choice(["retype", "retype", "swap", "drop", "count"])
            code = rng.choice([755, 756])
            if action == "retype":
                kind = rng.choice(_TAG_TYPES)
                count = rng.choice([1, 1, 1, 2, 4])
                value = _tag_value(kind, rng, count)
                entries[code] = (code, kind, None if kind == "s" else count, value, True)
                changes.append(f"page {index + 1} tag {code} {kind}x{count}={value!r:.40}")
            elif action == "swap":
                entries[755] = (755, "H", 1, max(low, high) + 1, True)
                entries[756] = (756, "H", 1, min(low, high), True)
                changes.append(f"page {index + 1} low > high")
            elif action == "drop":
                dropped = rng.choice([754, 755, 756])
                del entries[dropped]
                changes.append(f"page {index + 1} tag {dropped} dropped")
            else:
                count = rng.choice([2, 17, 300])
                entries[code] = (code, "H", count, tuple([rng.randrange(65536)] * count), True)
                changes.append(f"page {index + 1} tag {code} count {count}")
        extratags.append(list(entries.values()))
    _write_frame(path, pages, extratags)
    return f"{path.name}: " + "; ".join(changes)


_DTYPES = (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float16,
           np.float32, np.float64)


def _as_dtype(page: np.ndarray, dtype, rng: random.Random) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        out = page.astype(dtype)
        if rng.random() < 0.6:  # a few non-finite, negative or huge values
            flat = out.reshape(-1)
            for _ in range(rng.choice([1, 5])):
                flat[rng.randrange(flat.size)] = rng.choice(
                    [np.nan, np.inf, -np.inf, -1.0, float(np.finfo(dtype).max)])
        return out
    info = np.iinfo(dtype)
    return np.clip(page.astype(np.int64), info.min, info.max).astype(dtype)


def mutate_pages(cartridge: Path, rng: random.Random) -> str:
    """Pages of one frame or of all: count, size, sample type, samples per pixel, tiles,
    compression."""
    frames = _frames(cartridge)
    everywhere = rng.random() < 0.3
    targets = frames if everywhere else [_pick_frame(cartridge, rng)]
    action = rng.choice(["drop", "add", "resize", "dtype", "dtype", "rgb", "tiles", "zlib",
                         "one_pixel"])
    detail = ""
    dtype = rng.choice(_DTYPES)
    for path in targets:
        pages, tags = _stored_pages(path)
        extratags = [[(c, "H", 1, int(np.asarray(v).reshape(-1)[0]), True) for c, v in t.items()]
                     for t in tags]
        options = {}
        if action == "drop":
            keep = rng.choice([1, 2, 3])
            pages, extratags = pages[:keep], extratags[:keep]
            detail = f"{keep} pages"
        elif action == "add":
            extra = rng.choice([1, 2, 60])
            pages = pages + [pages[-1]] * extra
            extratags = extratags + [extratags[-1]] * extra
            detail = f"{len(pages)} pages"
        elif action == "resize":
            index = rng.randrange(len(pages))
            height, width = pages[index].shape
            new_shape = rng.choice([(height - 1, width), (height, width + 3), (1, width),
                                    (height, 1), (2 * height, 2 * width)])
            pages[index] = np.resize(pages[index], new_shape)
            detail = f"page {index + 1} {new_shape[1]} x {new_shape[0]}"
        elif action in ("dtype", "one_pixel"):
            pages = [_as_dtype(p if action == "dtype" else p[:1, :1], dtype, rng) for p in pages]
            detail = f"{np.dtype(dtype)} pages" + (" of 1 x 1 px" if action == "one_pixel" else "")
        elif action == "rgb":
            pages = [np.stack([page] * 3, axis=-1) for page in pages]
            options["photometric"] = "rgb"
            detail = "3 samples per pixel"
        elif action == "tiles":
            pages = [np.pad(p, ((0, (-p.shape[0]) % 16), (0, (-p.shape[1]) % 16))) for p in pages]
            options["tile"] = (16, 16)
            detail = "tiled 16 x 16"
        else:
            options["compression"] = "zlib"
            detail = "zlib compressed"
        _write_frame(path, pages, extratags, **options)
    return f"{'all frames' if everywhere else targets[0].name}: {action} ({detail})"


# --- XML --------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE archive [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
              for i in range(1, 10))
    + "]>\n"
)
_EXTERNAL_ENTITY = ('<?xml version="1.0"?>\n<!DOCTYPE archive [\n'
                    ' <!ENTITY secret SYSTEM "file:///etc/passwd">\n]>\n')
_PARAMETER_ENTITY = ('<?xml version="1.0"?>\n<!DOCTYPE archive [\n'
                     ' <!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd">\n %remote;\n]>\n')
_EXTERNAL_DTD = '<?xml version="1.0"?>\n<!DOCTYPE archive SYSTEM "http://127.0.0.1:9/a.dtd">\n'
_ENCODINGS = ("klingon-9", "utf-16", "utf-32", "shift_jis", "latin-1", "ascii", "cp1252",
              "UTF-7", "euc-jp", "", "x" * 300, "utf-8", "rot13", "base64", "idna")


def xml_body(text: str) -> str:
    """The XML without its declaration."""
    return text.split("?>", 1)[1] if text.startswith("<?xml") else text


def mutate_xml_text(cartridge: Path, rng: random.Random) -> str:
    """The XML as text: truncation, bit flips, root, encoding, entities, BOMs, nesting,
    duplicated or deleted elements, filter names."""
    path = cartridge / XML_NAME
    text = path.read_text()
    kind = rng.choice(["truncate", "flips", "root", "encoding", "encoding", "laughs",
                       "external", "parameter", "dtd", "empty", "bom", "utf16", "nesting",
                       "duplicate", "delete", "filters", "comment", "binary"])
    if kind == "truncate":
        cut = rng.randrange(len(text))
        path.write_text(text[:cut])
        return f"truncated to {cut} chars"
    if kind == "flips":
        data = bytearray(text.encode())
        for _ in range(rng.choice([1, 4, 16])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        return "bit flips"
    if kind == "root":
        root = rng.choice(["root", "archive2", "a:archive xmlns:a='urn:x'", "ARCHIVE", "export"])
        name = root.split()[0]
        path.write_text(xml_body(text).replace("<archive>", f"<{root}>")
                        .replace("</archive>", f"</{name}>"))
        return f"root <{root}>"
    if kind == "encoding":
        encoding = rng.choice(_ENCODINGS)
        body = xml_body(text)
        try:
            data = f'<?xml version="1.0" encoding="{encoding}"?>{body}'.encode(encoding or "utf-8")
        except (LookupError, UnicodeError):
            data = f'<?xml version="1.0" encoding="{encoding}"?>{body}'.encode()
        path.write_bytes(data)
        return f"encoding {encoding[:20]!r}"
    if kind == "laughs":
        path.write_text(BILLION_LAUGHS + xml_body(text).replace("</archive>",
                                                              "<note>&lol9;</note></archive>"))
        return "billion laughs"
    if kind == "external":
        path.write_text(_EXTERNAL_ENTITY + xml_body(text).replace("</archive>",
                                                               "<note>&secret;</note></archive>"))
        return "external entity"
    if kind == "parameter":
        path.write_text(_PARAMETER_ENTITY + xml_body(text))
        return "external parameter entity"
    if kind == "dtd":
        path.write_text(_EXTERNAL_DTD + xml_body(text))
        return "external DTD reference"
    if kind == "empty":
        path.write_text(rng.choice(["", "   \n", "\x00" * 10]))
        return "empty"
    if kind == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        return "UTF-8 BOM"
    if kind == "utf16":
        path.write_bytes(('<?xml version="1.0" encoding="utf-16"?>' + xml_body(text))
                         .encode("utf-16"))
        return "UTF-16 with BOM"
    if kind == "nesting":
        depth = rng.choice([100, 5000, 100000])
        path.write_text(text.replace("</archive>", "<a>" * depth + "</a>" * depth + "</archive>"))
        return f"nesting depth {depth}"
    if kind == "duplicate":
        block = rng.choice(["<runs>", "<test_filters>", "<events>"])
        start = text.index(block)
        end = text.index(block.replace("<", "</")) + len(block) + 1
        path.write_text(text[:end] + text[start:end] + text[end:])
        return f"{block} twice"
    if kind == "delete":
        tag = rng.choice(["runs", "test_filters", "events", "numrows", "numcols", "camxsize",
                          "framenum", "location", "record"])
        start = text.index(f"<{tag}>")
        end = text.index(f"</{tag}>") + len(tag) + 3
        path.write_text(text[:start] + text[end:])
        return f"first <{tag}> deleted"
    if kind == "filters":
        names = rng.choice([("DAPI", "FITC", "PE"), ("DAPI", "FITC", "PE", "APC", "PE"),
                            ("DAPI", "GFP", "PE", "APC"), ("DAPI", "DAPI", "PE", "APC"),
                            ("dapi", "fitc", "pe", "apc"), ("", "FITC", "PE", "APC"),
                            ("DAPI",) * 500, ("DAPI\u0301", "FITC", "PE", "APC")])
        records = "".join(f"<record><filtername>{n}</filtername></record>" for n in names)
        start = text.index("<test_filters>") + len("<test_filters>")
        end = text.index("</test_filters>")
        path.write_text(text[:start] + records + text[end:])
        return f"filters {names[:5]}"
    if kind == "comment":
        path.write_text(text.replace("<numrows>", "<numrows><!-- rows -->")
                        .replace("<numcols>", "<numcols><![CDATA[") .replace("</numcols>",
                                                                           "]]></numcols>"))
        return "comment and CDATA in numbers"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([10, 4000]))))
    return "random bytes"


_NUMBER_FIELDS = ("numrows", "numcols", "camxsize", "camysize", "framenum", "eventnum",
                  "numselected", "location", "pixelsize")


def mutate_xml_numbers(cartridge: Path, rng: random.Random) -> str:
    """One number in the XML (grid, camera size, event fields, location corner, pixel size)
    replaced by an extreme, malformed or non-ASCII one."""
    path = cartridge / XML_NAME
    text = path.read_text()
    field = rng.choice(_NUMBER_FIELDS)
    value = rng.choice(NASTY_NUMBERS + (str(rng.randrange(-5, 3000)),))
    if field == "pixelsize":
        text = text.replace("</runs>", f"</runs><pixelsize>{value}</pixelsize>")
    elif field == "location":
        start = text.index("<location>") + len("<location>")
        end = text.index("</location>")
        corners = text[start:end]
        numbers = corners.replace("(", " ").replace(")", " ").replace(",", " ").split()
        numbers[rng.randrange(4)] = value
        text = text[:start] + "({},{}),({},{})".format(*numbers) + text[end:]
    else:
        occurrences = text.count(f"<{field}>")
        skip = rng.randrange(occurrences)
        start = -1
        for _ in range(skip + 1):
            start = text.index(f"<{field}>", start + 1)
        start += len(field) + 2
        end = text.index(f"</{field}>", start)
        text = text[:start] + value + text[end:]
    path.write_text(text)
    return f"{field} = {value[:30]!r}"


# --- folder layouts ---------------------------------------------------------------------


def mutate_folder(cartridge: Path, rng: random.Random) -> str:
    """The folder: missing or empty folders, symlinks (to frames, dangling, loops, devices),
    FIFOs, ``._`` files, extra, missing or duplicated frames, misplaced files."""
    images = cartridge / "processed"
    frames = _frames(cartridge)
    victim = rng.choice(frames)
    kind = rng.choice(["no_images", "empty_images", "empty_cartridge", "symlink_copy",
                       "dangling", "loop", "device", "fifo_frame", "fifo_xml", "dotfiles",
                       "extra_frame", "missing_frame", "renumbered", "unnumbered", "dir_frame",
                       "second_xml", "xml_dir", "nested", "symlink_dir", "zero_frame",
                       "no_xml", "far_frame"])
    if kind == "no_images":
        shutil.rmtree(images)
    elif kind == "empty_images":
        for frame in frames:
            frame.unlink()
    elif kind == "empty_cartridge":
        shutil.rmtree(cartridge)
        cartridge.mkdir()
    elif kind == "symlink_copy":
        target = rng.choice(frames)
        victim.unlink()
        victim.symlink_to(target.name if rng.random() < 0.5 else target)
    elif kind == "dangling":
        victim.unlink()
        victim.symlink_to(images / "nowhere.tif")
    elif kind == "loop":
        victim.unlink()
        victim.symlink_to(victim.name)
    elif kind == "device":
        victim.unlink()
        victim.symlink_to(rng.choice(["/dev/zero", "/dev/null", "/dev/urandom"]))
    elif kind == "fifo_frame":
        victim.unlink()
        os.mkfifo(victim)
    elif kind == "fifo_xml":
        (cartridge / XML_NAME).unlink()
        os.mkfifo(cartridge / XML_NAME)
    elif kind == "dotfiles":
        for frame in frames[: rng.choice([1, len(frames)])]:
            (images / f"._{frame.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02" + bytes(50))
        (cartridge / "._01140637.xml").write_bytes(b"\x00\x05\x16\x07")
    elif kind == "extra_frame":
        shutil.copy(victim, images / f"{CARTRIDGE_ID}_{len(frames) + 1:03d}.tif")
    elif kind == "missing_frame":
        victim.unlink()
    elif kind == "renumbered":
        victim.rename(images / f"{CARTRIDGE_ID}_{rng.choice([0, 999, 1000]):03d}.tif")
    elif kind == "unnumbered":
        victim.rename(images / "frame.tif")
    elif kind == "dir_frame":
        victim.unlink()
        victim.mkdir()
    elif kind == "second_xml":
        shutil.copy(cartridge / XML_NAME, cartridge / "other.xml")
        (cartridge / XML_NAME).rename(cartridge / "renamed.xml")
    elif kind == "xml_dir":
        (cartridge / XML_NAME).unlink()
        (cartridge / XML_NAME).mkdir()
    elif kind == "nested":
        deeper = cartridge / "a" / "b" / "c" / "processed"
        deeper.parent.mkdir(parents=True)
        images.rename(deeper)
    elif kind == "symlink_dir":
        images.rename(cartridge.parent / "elsewhere")
        images.symlink_to(cartridge.parent / "elsewhere")
    elif kind == "zero_frame":
        victim.write_bytes(b"")
    elif kind == "no_xml":
        (cartridge / XML_NAME).unlink()
    else:
        victim.rename(images / f"{CARTRIDGE_ID}_{'9' * 200}.tif")
    return f"{kind} ({victim.name})"


def mutate_compound(cartridge: Path, rng: random.Random) -> str:
    """Two mutations of different families, one after the other (a folder layout last: the
    others read the files it may replace by FIFOs)."""
    first, second = sorted(rng.sample(sorted(_SINGLE_FAMILIES), 2), key=lambda f: f == "folder")
    done = [_SINGLE_FAMILIES[first](cartridge, rng)]
    try:
        done.append(_SINGLE_FAMILIES[second](cartridge, rng))
    except (OSError, ValueError, IndexError, struct.error, tifffile.TiffFileError,
            CaseTimeout):  # e.g. the file is gone, or tifffile cannot finish reading it
        done.append(f"{second} not applicable after {first}")
    return f"{first}: {done[0]} + {second}: {done[1]}"


_SINGLE_FAMILIES: dict[str, Callable[[Path, random.Random], str]] = {
    "tiff_header": mutate_tiff_header,
    "tiff_bytes": mutate_tiff_bytes,
    "ifd_entry": mutate_ifd_entry,
    "stretch_tag": mutate_stretch_tag,
    "pages": mutate_pages,
    "xml_text": mutate_xml_text,
    "xml_numbers": mutate_xml_numbers,
    "folder": mutate_folder,
}
FAMILIES = {**_SINGLE_FAMILIES, "compound": mutate_compound}


def cases(count: int, seed: int) -> list[Case]:
    """``count`` cases, the families in turn, each with its own seed derived from ``seed``."""
    names = list(FAMILIES)
    return [Case(names[i % len(names)], seed * 1_000_000 + i) for i in range(count)]


# --- running a case ---------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised in the case when it runs past its time (BaseException: nothing swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds``."""
    def expire(signum, frame):
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_limit(extra_bytes: int):
    """Let the process map at most ``extra_bytes`` more address space until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def one_numba_thread():
    """Run numba's parallel kernels on one thread until the block ends: on frames this
    small, waking the thread pool costs more than the work (5 times, on a shared machine)."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def contract_problem(code: int | None, stderr: str, out: Path, cartridge_root: Path) -> str | None:
    """What breaks the contract in one run of ``ctcimg score``, or None when it holds."""
    lines = stderr.strip().splitlines()
    if code == 0:
        if stderr.strip():
            return f"exit 0 but stderr says: {' | '.join(lines)[:300]}"
        for name in ("summary.json", "events.csv"):
            if not (out / name).is_file():
                return f"exit 0 but {name} was not written"
        try:
            summary = _strict_json((out / "summary.json").read_text())
        except ValueError as err:
            return f"summary.json is not strict JSON ({err})"
        if not isinstance(summary.get("ctc_count"), int) or summary.get("n_frames", 0) < 1:
            return "summary.json lacks ctc_count / n_frames"
        return None
    if code == 2:
        if len(lines) != 1:
            return f"exit 2 with {len(lines)} lines on stderr: {' | '.join(lines)[:300]}"
        line = lines[0]
        if not line.startswith("ctcimg score: error: ") or "Traceback" in line:
            return f"exit 2 but stderr is not one error line: {line[:300]}"
        if str(cartridge_root) not in line:
            return f"error does not name a file of the cartridge: {line[:300]}"
        if out.exists() and any(out.iterdir()):
            return f"exit 2 but {sorted(p.name for p in out.iterdir())} written"
        return None
    return f"exit {code}: {' | '.join(lines)[:300]}"


def score_in_process(argv: list[str], timeout_s: float = CASE_TIMEOUT_S,
                     memory_bytes: int = CASE_MEMORY_BYTES) -> tuple[int | None, str, str]:
    """``ctcimg.cli.main(argv)`` with stdout and stderr captured, every warning shown,
    under a time and memory limit. Returns (exit code or None, stderr, traceback text)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    crash = ""
    code: int | None = None
    saved_showwarning = warnings.showwarning
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                warnings.catch_warnings(), memory_limit(memory_bytes), time_limit(timeout_s), \
                one_numba_thread():
            warnings.simplefilter("always")
            code = main(argv)
    except CaseTimeout:
        crash = f"no answer within {timeout_s} s"
    except BaseException:  # the contract says main never raises: record what escaped
        crash = traceback.format_exc()
    finally:
        warnings.showwarning = saved_showwarning
    return code, stderr.getvalue(), crash


def warm_up(workdir: Path) -> None:
    """Score one clean cartridge per stored sample type the kernels are compiled for
    (uint8, uint16, float32), without a time limit: the first run of each may compile
    numba kernels, which must not count against a case's time."""
    for bits, encoding, dtype in ((16, "stretch", None), (8, "stretch", None),
                                  (16, "raw", np.float32)):
        root = workdir / f"warm-up-{bits}-{encoding}"
        shutil.rmtree(root, ignore_errors=True)
        cartridge, _ = make_cartridge(root, CARTRIDGE_ID, bits=bits, encoding=encoding)
        if dtype is not None:
            for path in _frames(cartridge):
                pages, _ = _stored_pages(path)
                _write_frame(path, [page.astype(dtype) for page in pages])
        code, stderr, crash = score_in_process(["score", str(cartridge), "-o", str(root / "out")],
                                               timeout_s=3600)
        shutil.rmtree(root, ignore_errors=True)
        if code != 0:
            raise RuntimeError(f"a clean cartridge did not score: {stderr}{crash}")


def run_case(case: Case, workdir: Path) -> Outcome:
    """Build, mutate and score one case in this process; check the contract."""
    rng = random.Random(case.name)
    root = workdir / f"{case.family}-{case.seed}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        cartridge = _base_cartridge(root, rng)
        try:
            with time_limit(CASE_TIMEOUT_S):
                mutation = FAMILIES[case.family](cartridge, rng)
        except (Exception, CaseTimeout):  # a bug of the harness, not of ctcimg: still failed
            return Outcome(case, "?", "failed", f"mutation failed:\n{traceback.format_exc()}")
        out = root / "out"
        code, stderr, crash = score_in_process(["score", str(cartridge), "-o", str(out)])
        if crash:
            last = crash.strip().splitlines()[-1]
            return Outcome(case, mutation, "failed", f"raised: {last[:300]}\n{crash}")
        problem = contract_problem(code, stderr, out, root)
        if problem:
            return Outcome(case, mutation, "failed", problem)
        return Outcome(case, mutation, "result" if code == 0 else "error", stderr.strip())
    finally:
        shutil.rmtree(root, ignore_errors=True)
