"""Small MAT-files written byte by byte for the tests: a MATLAB ``categorical`` label file (an MCOS object and its
subsystem, laid out as the survey's label4.mat is: tasks/matlab.py describes the layout) and the survey's image
variable (scipy writes numeric arrays), so that the survey's format is tested where the reference files are absent."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import scipy.io

HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: merflow tests"


def element(kind: int, data: bytes) -> bytes:
    """A data element: its tag and its bytes, padded to 8."""
    return struct.pack("<II", kind, len(data)) + data + b"\0" * ((-len(data)) % 8)


def matrix(mx_class: int, dims, *parts: bytes, name: str = "") -> bytes:
    """A miMATRIX: array flags, dimensions, name, then ``parts``."""
    body = (element(6, struct.pack("<II", mx_class, 0)) + element(5, np.asarray(dims, "<i4").tobytes())
            + element(1, name.encode()) + b"".join(parts))
    return element(14, body)


def text(value: str) -> bytes:
    return matrix(4, [1, len(value)], element(4, value.encode("utf-16-le")))


def numbers(values, mx_class: int, dtype: str, kind: int) -> bytes:
    values = np.asarray(values, dtype)
    return matrix(mx_class, [values.size, 1] if values.ndim == 1 else list(values.shape),
                  element(kind, values.ravel(order="F").tobytes()))


def cell(items: list[bytes]) -> bytes:
    return matrix(1, [len(items), 1], *items)


def record(fields: dict[str, bytes]) -> bytes:
    width = 32
    names = b"".join(n.encode().ljust(width, b"\0") for n in fields)
    return matrix(2, [1, 1], element(5, struct.pack("<i", width)), element(1, names), *fields.values())


def empty() -> bytes:
    return struct.pack("<II", 14, 0)


def opaque(class_name: str, content: bytes, name: str = "") -> bytes:
    """An MCOS object element: flags (class 17), its name, "MCOS", its class, its content."""
    body = (element(6, struct.pack("<II", 17, 0)) + element(1, name.encode()) + element(1, b"MCOS")
            + element(1, class_name.encode()) + content)
    return element(14, body)


def categorical_metadata() -> bytes:
    """The FileWrapper__ metadata of one categorical object (version 3, label4.mat's layout)."""
    names = ["categoryNames", "codes", "categorical", "isProtected", "isOrdinal"]
    blob = b"".join(n.encode() + b"\0" for n in names)
    blob += b"\0" * ((-len(blob)) % 8)
    start = 40 + len(blob)
    classes = struct.pack("<4i", 0, 0, 0, 0) + struct.pack("<4i", 0, 3, 0, 0)
    objects = struct.pack("<6i", 0, 0, 0, 0, 0, 0) + struct.pack("<6i", 1, 0, 0, 0, 1, 1)
    properties = b"\0" * 8 + struct.pack("<7i", 2, 1, 1, 0, 2, 1, 1)
    properties += b"\0" * ((-len(properties)) % 8)
    tail = b"\0" * 16
    seg1 = start
    seg2 = seg1 + len(classes)
    seg3 = seg2
    seg4 = seg3 + len(objects)
    seg5 = seg4 + len(properties)
    end = seg5 + len(tail)
    header = struct.pack("<2i", 3, len(names)) + struct.pack("<8i", seg1, seg2, seg3, seg4, seg5, end, 0, 0)
    return header + blob + classes + objects + properties + tail


def write_categorical(path: Path, categories: list[str], codes: list[int], variable: str = "qutrain_label") -> Path:
    """A MAT-file holding one categorical vector: ``categories`` and 1-based ``codes`` (0: <undefined>)."""
    metadata = np.frombuffer(categorical_metadata(), np.uint8)
    defaults = record({"categoryNames": cell([]), "codes": numbers([], 9, "<u1", 2),
                       "isProtected": numbers([0], 9, "<u1", 2), "isOrdinal": numbers([0], 9, "<u1", 2)})
    wrapper = cell([numbers(metadata, 9, "<u1", 2), empty(), cell([text(c) for c in categories]),
                    numbers(codes, 9, "<u1", 2), numbers([0, 0], 12, "<i4", 5), cell([record({}), defaults])])
    stream = b"\x00\x01IM\x00\x00\x00\x00" + record({"MCOS": opaque("FileWrapper__", wrapper)})
    variable_element = opaque("categorical", numbers([0xDD000000, 2, 1, 1, 1, 1], 13, "<u4", 6), name=variable)
    subsystem = numbers(np.frombuffer(stream, np.uint8)[None, :], 9, "<u1", 2)
    offset = 128 + len(variable_element)
    header = HEADER_TEXT.ljust(116, b" ") + struct.pack("<Q", offset) + struct.pack("<H", 0x0100) + b"IM"
    path.write_bytes(header + variable_element + subsystem)
    return path


def write_survey_images(path: Path, images: np.ndarray) -> Path:
    """The survey's image variable ``qutrain_C`` (H x W x C x N) as scipy writes it (level 5)."""
    scipy.io.savemat(str(path), {"qutrain_C": images})
    return path
