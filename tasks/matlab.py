"""MATLAB MAT-file (level 5) reading of what scipy.io.loadmat leaves opaque: MCOS objects (a ``categorical``
label vector, a network's layers), read from the file's own bytes.

A MAT-file is a 128-byte header (its bytes 116..123: where the subsystem lies) and data elements, each a
tag (type, size) and its bytes, miCOMPRESSED ones zlib streams of more elements. A variable is a miMATRIX:
array flags (class), dimensions, name, then its data; numeric data is column-major. An MCOS object
variable (class 17, "opaque") holds only a reference: a uint32 array ``0xDD000000, ndims, dims, object ids,
class id``. The objects themselves are in the subsystem, a uint8 variable that is a MAT stream of its own
(8 header bytes, then elements): a struct whose field ``MCOS`` is a ``FileWrapper__`` object holding a cell
array: cell 0 the metadata (below), cell 1 empty, then one cell per stored property value, and last each
class's default property values. The metadata (little-endian int32): version, number of names, eight
segment offsets, the names (NUL-terminated, 8-byte aligned), then the segments: 1) classes, 16 bytes each
(package name, class name: 1-based name indices); 3) objects, 24 bytes each (class index, 0, 0, its block
in segment 2, its block in segment 4, a dependency id), a reference's object id being its entry here; 2 and
4) property blocks, after 8 empty bytes: per object a property count and that many (name index, kind,
value) triples, padded to 8 bytes; kind 1: the value is the cell holding it (cell value + 2),
kind 0: a name, kind 2: the value itself. Entry 0 of segments 1 and 3 is empty. This layout is not
published by MathWorks; it is the one the survey's files use (../shared/reference/survey: label4.mat,
label9.mat, net4.mat; tests/test_matlab.py) and that other readers of MCOS document the same way.

Little-endian files only (every MATLAB since R2008 on x86 and ARM writes them). Sparse matrices, function
handles and Java objects are not read (an error names them). Pure reading: nothing here writes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER_BYTES = 128
MI_INT8, MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16 = 1, 14, 15, 16, 17
_TYPES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8", 13: "<u8",
          16: "<u1", 17: "<u2"}
# mxClass -> numpy dtype of a numeric array (the data may be stored in a smaller type: it is converted).
_CLASSES = {6: "<f8", 7: "<f4", 8: "<i1", 9: "<u1", 10: "<i2", 11: "<u2", 12: "<i4", 13: "<u4", 14: "<i8", 15: "<u8"}
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE, MX_OPAQUE = 1, 2, 3, 4, 5, 17
OBJECT_REFERENCE = 0xDD000000  # the first value of an MCOS object's reference array
CATEGORICAL = "categorical"


class MatFileError(ValueError):
    """A file that is not a MAT-file, or holds what this reader cannot read; the message says which."""


@dataclass
class ObjectReference:
    """An MCOS object as a variable or a property holds it: its class and the ids of its objects."""

    class_name: str
    object_ids: list[int]
    dims: tuple[int, ...]


@dataclass
class MatlabObject:
    """An MCOS object: its class and its properties (the class defaults, then the object's own values)."""

    class_name: str
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Categorical:
    """A MATLAB ``categorical`` vector: its category names, its codes (1-based; 0 is <undefined>) and, per
    element, its category name (None where undefined)."""

    variable: str
    categories: tuple[str, ...]
    codes: np.ndarray

    @property
    def labels(self) -> list[str | None]:
        """Each element's category (None for code 0, MATLAB's <undefined>)."""
        return [self.categories[c - 1] if 0 < c <= len(self.categories) else None for c in self.codes.tolist()]


def _elements(buffer: bytes, start: int = 0):
    """(type, bytes) of each data element of ``buffer`` from ``start``: small elements (the size in the tag's
    upper half, 4 bytes of data in the tag) and ordinary ones (padded to 8 bytes, except miCOMPRESSED)."""
    position = start
    while position + 8 <= len(buffer):
        kind, size = struct.unpack_from("<II", buffer, position)
        if kind >> 16:
            yield kind & 0xFFFF, buffer[position + 4:position + 4 + (kind >> 16)]
            position += 8
            continue
        end = position + 8 + size
        if end > len(buffer):
            raise MatFileError(f"a data element of {size} bytes runs past the end of the file (truncated?)")
        yield kind, buffer[position + 8:end]
        position = end if kind == MI_COMPRESSED else position + 8 + (size + 7) // 8 * 8


def _numbers(kind: int, data: bytes) -> np.ndarray:
    if kind not in _TYPES:
        raise MatFileError(f"data of MAT type {kind} is not read")
    return np.frombuffer(data, _TYPES[kind])


def _text(kind: int, data: bytes) -> str:
    if kind in (MI_UTF8, MI_INT8, 2):
        return data.decode("utf-8")
    return _numbers(kind, data).astype(np.uint16).tobytes().decode("utf-16-le")


class _Reader:
    """The variables of one MAT-file, its subsystem's objects resolved on demand."""

    def __init__(self, data: bytes, where: str):
        self.where = where
        if len(data) < HEADER_BYTES or not data.startswith(b"MATLAB 5.0 MAT-file"):
            raise MatFileError(f"{where} is not a MATLAB 5 MAT-file (its header does not say so)")
        if data[126:128] != b"IM":
            raise MatFileError(f"{where} is a big-endian MAT-file, which is not read")
        self.variables: dict[str, object] = {}
        self.subsystem: bytes | None = None
        subsystem_offset = struct.unpack_from("<Q", data, 116)[0]
        if subsystem_offset and subsystem_offset + 8 > len(data):
            raise MatFileError(f"{where}: its subsystem lies at byte {subsystem_offset}, past its end of {len(data)} "
                               "bytes (truncated?)")
        position = HEADER_BYTES
        for kind, body in _elements(data, HEADER_BYTES):
            if kind == MI_COMPRESSED:
                try:
                    body = zlib.decompress(body)
                except zlib.error as error:
                    raise MatFileError(f"{where}: a compressed variable does not decompress ({error})") from None
                kind, body = next(_elements(body), (0, b""))
            if kind == MI_MATRIX:
                name, value = self._matrix(body)
                if subsystem_offset and position == subsystem_offset:
                    self.subsystem = bytes(np.asarray(value, dtype=np.uint8).ravel(order="F"))
                else:
                    self.variables[name] = value
            position = self._next_position(data, position)
        self._objects: dict[int, MatlabObject] | None = None

    @staticmethod
    def _next_position(data: bytes, position: int) -> int:
        kind, size = struct.unpack_from("<II", data, position)
        if kind >> 16:
            return position + 8
        return position + 8 + size if kind == MI_COMPRESSED else position + 8 + (size + 7) // 8 * 8

    # -------------------------------------------------------------------------------- one matrix
    def _matrix(self, body: bytes) -> tuple[str, object]:
        """(name, value) of a miMATRIX's bytes: numeric arrays as numpy (MATLAB's shape), char as str, cell as a
        list (column-major order), struct as a dict (1x1) or a list of dicts, MCOS objects as ObjectReference."""
        parts = list(_elements(body))
        if not parts:
            return "", None  # an empty matrix: MATLAB writes [] as an element of no bytes
        flags = struct.unpack_from("<I", parts[0][1])[0]
        mx_class = flags & 0xFF
        if mx_class == MX_OPAQUE:
            name = _text(*parts[1])
            system, class_name = _text(*parts[2]), _text(*parts[3])
            content = self._matrix(parts[4][1])[1] if len(parts) > 4 and parts[4][0] == MI_MATRIX else None
            if system != "MCOS":
                raise MatFileError(f"{self.where}: variable {name!r} is a {system} object ({class_name}), not read")
            if class_name == "FileWrapper__":
                return name, content
            return name, self._reference(class_name, content)
        dims = tuple(int(d) for d in _numbers(*parts[1]))
        name = _text(*parts[2]) if parts[2][1] else ""
        if mx_class == MX_CELL:
            return name, [self._matrix(data)[1] for kind, data in parts[3:] if kind == MI_MATRIX]
        if mx_class in (MX_STRUCT, MX_OBJECT):
            offset = 4 if mx_class == MX_OBJECT else 3  # an old-style object names its class first
            width = int(_numbers(*parts[offset])[0])
            raw = parts[offset + 1][1]
            fields = [raw[i:i + width].split(b"\0")[0].decode() for i in range(0, len(raw), width)] if width else []
            values = [self._matrix(data)[1] for kind, data in parts[offset + 2:] if kind == MI_MATRIX]
            count = int(np.prod(dims)) if dims else 1
            records = [dict(zip(fields, values[i * len(fields):(i + 1) * len(fields)])) for i in range(count)]
            return name, records[0] if count == 1 else records
        if mx_class == MX_CHAR:
            if len(parts) < 4:
                return name, ""
            return name, _text(*parts[3])
        if mx_class == MX_SPARSE:
            raise MatFileError(f"{self.where}: variable {name!r} is a sparse matrix, which is not read")
        if mx_class not in _CLASSES:
            raise MatFileError(f"{self.where}: variable {name!r} has MATLAB class {mx_class}, which is not read")
        values = _numbers(*parts[3]).astype(_CLASSES[mx_class]) if len(parts) > 3 else np.zeros(0, _CLASSES[mx_class])
        if flags & 0x800 and len(parts) > 4:  # complex
            values = values + 1j * _numbers(*parts[4]).astype(_CLASSES[mx_class])
        if flags & 0x200:  # logical
            values = values.astype(bool)
        return name, values.reshape(dims, order="F") if values.size == int(np.prod(dims)) else values

    @staticmethod
    def _reference(class_name: str, content) -> ObjectReference:
        values = np.asarray(content, dtype=np.uint64).ravel(order="F").tolist() if content is not None else []
        if len(values) < 4 or values[0] != OBJECT_REFERENCE:
            raise MatFileError(f"an MCOS {class_name} object whose reference cannot be read")
        ndims = int(values[1])
        dims = tuple(int(d) for d in values[2:2 + ndims])
        count = int(np.prod(dims))
        return ObjectReference(class_name, [int(v) for v in values[2 + ndims:2 + ndims + count]], dims)

    # -------------------------------------------------------------------------------- the subsystem
    def objects(self) -> dict[int, MatlabObject]:
        """Every MCOS object of the file by id, its properties' values as stored (references unresolved)."""
        if self._objects is not None:
            return self._objects
        if self.subsystem is None:
            raise MatFileError(f"{self.where} has MCOS objects but no subsystem to hold them")
        stream = self.subsystem
        found = [self._matrix(body)[1] for kind, body in _elements(stream, 8) if kind == MI_MATRIX]
        wrapper = next((v.get("MCOS") for v in found if isinstance(v, dict) and "MCOS" in v), None)
        if not isinstance(wrapper, list) or not wrapper or not isinstance(wrapper[0], np.ndarray):
            raise MatFileError(f"{self.where}: its subsystem holds no MCOS FileWrapper__ object")
        metadata = wrapper[0].astype(np.uint8).tobytes()
        version, n_names = struct.unpack_from("<ii", metadata, 0)
        offsets = struct.unpack_from("<8i", metadata, 8)
        names, position = [], 40
        while len(names) < n_names:
            end = metadata.index(b"\0", position)
            names.append(metadata[position:end].decode("utf-8"))
            position = end + 1
        classes = {}
        for index, at in enumerate(range(offsets[0], offsets[1], 16)):
            package, class_name = struct.unpack_from("<ii", metadata, at)
            if index:
                classes[index] = ".".join(names[i - 1] for i in (package, class_name) if i)
        defaults = wrapper[-1] if isinstance(wrapper[-1], list) else []
        # Two segments of property blocks, the same format: 2 for some classes' objects, 4 for others'.
        blocks = (self._property_blocks(metadata, offsets[1], offsets[2], names, wrapper),
                  self._property_blocks(metadata, offsets[3], offsets[4], names, wrapper))
        objects = {}
        for index, at in enumerate(range(offsets[2], offsets[3], 24)):
            class_index, _, _, block_2, block_4, _dependency = struct.unpack_from("<6i", metadata, at)
            if not index:
                continue
            default = defaults[class_index] if class_index < len(defaults) and isinstance(defaults[class_index], dict) \
                else {}
            own = blocks[0].get(block_2, {}) if block_2 else blocks[1].get(block_4, {})
            # A reference names an object by its entry in this segment (1-based).
            objects[index] = MatlabObject(classes.get(class_index, "?"), dict(default) | own)
        if version < 2:
            raise MatFileError(f"{self.where}: MCOS metadata version {version} is not read")
        self._objects = objects
        return objects

    @staticmethod
    def _property_blocks(metadata: bytes, start: int, end: int, names: list[str], cells: list) -> dict[int, dict]:
        blocks, position, index = {}, start + 8, 1  # block 0 is the 8 empty bytes
        while position + 4 <= end:
            (count,) = struct.unpack_from("<i", metadata, position)
            position += 4
            values = {}
            for _ in range(count):
                name, kind, value = struct.unpack_from("<3i", metadata, position)
                position += 12
                if kind == 1:
                    values[names[name - 1]] = cells[value + 2]
                elif kind == 0:
                    values[names[name - 1]] = names[value - 1] if value else ""
                else:
                    values[names[name - 1]] = value
            position += (8 - position % 8) % 8
            blocks[index] = values
            index += 1
        return blocks

    def resolve(self, value):
        """``value`` with every object reference replaced by its MatlabObject(s)."""
        if isinstance(value, ObjectReference):
            objects = self.objects()
            resolved = [objects[i] for i in value.object_ids if i in objects]
            return resolved[0] if len(resolved) == 1 else resolved
        return value


def read_mat(path: str | Path) -> dict[str, object]:
    """Every variable of a MAT-file by name: numeric arrays (MATLAB's shape, column-major data), text, cells
    (lists), structs (dicts) and MCOS objects (MatlabObject, properties as stored)."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), str(path))
    return {name: reader.resolve(value) for name, value in reader.variables.items()}


def read_categorical(path: str | Path) -> Categorical:
    """The one ``categorical`` variable of a MAT-file (the survey's label4.mat / label9.mat): its categories
    and codes, read from the MCOS subsystem. A file holding none, or several, is a MatFileError."""
    path = Path(path)
    variables = read_mat(path)
    found = [(name, value) for name, value in variables.items()
             if isinstance(value, MatlabObject) and value.class_name == CATEGORICAL]
    if len(found) != 1:
        held = ", ".join(f"{n} ({type(v).__name__ if not isinstance(v, MatlabObject) else v.class_name})"
                         for n, v in variables.items()) or "nothing"
        raise MatFileError(f"{path} holds {len(found)} categorical variables (it holds {held}); a label file "
                           "holds exactly one")
    name, value = found[0]
    names = value.properties.get("categoryNames")
    codes = value.properties.get("codes")
    if not isinstance(names, list) or codes is None:
        raise MatFileError(f"{path}: categorical {name!r} lacks its categoryNames or codes")
    return Categorical(name, tuple(str(n) for n in names), np.asarray(codes).ravel(order="F").astype(np.int64))


def iter_structs(value):
    """Every struct (dict) in ``value``, depth first: in lists, dict values and MatlabObject properties."""
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from iter_structs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from iter_structs(inner)
    elif isinstance(value, MatlabObject):
        yield from iter_structs(value.properties)


def structs(path: str | Path) -> list[dict]:
    """Every struct of a MAT-file: in its variables and in its MCOS objects' stored property values (a
    network's layers, net4.mat: each layer's settings are a struct of its object)."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), str(path))
    found = list(iter_structs(list(reader.variables.values())))
    if reader.subsystem is not None:
        for kind, body in _elements(reader.subsystem, 8):
            if kind == MI_MATRIX:
                found.extend(iter_structs(reader._matrix(body)[1]))
    return found
