#!/usr/bin/env python3
"""short-names.py IN OUT: shortens the function names of a wasm module's name section.

The names are the demangled v0 symbols Envoy prints in a trapped VM's backtrace. Each
name keeps its own path in full (`webhook_guard::signing::mac`, `<webhook_guard::host::Stream
as HttpContext>::on_http_request_headers`); the paths inside its generic arguments and the
trait it implements keep their last segment (`CoreWrapper<HmacCore<...>>`,
`lenient::{closure#0}`), so a frame still says which function and which instantiation
trapped. Where two names would become one, both stay as they were. Only the name section
changes; every other byte of the module is copied as it is.
"""
import re
import sys

# A path's leading `segment::`s, up to its last identifier segment (a closure's
# `{closure#0}` keeps the function it belongs to).
PREFIX = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*::)+(?=[A-Za-z_])")


def shorten(name):
    out = []
    # One entry per open `<`: [generic arguments?, past ` as ` (the trait)?]
    open_ = []
    i = 0
    while i < len(name):
        c = name[i]
        if c == "<":
            prev = name[i - 1] if i else ""
            open_.append([bool(prev) and (prev.isalnum() or prev in "_:"), False])
        elif c == ">":
            if open_:
                open_.pop()
        elif name.startswith(" as ", i) and open_ and not open_[-1][0]:
            open_[-1][1] = True
            out.append(" as ")
            i += 4
            continue
        elif i == 0 or not (name[i - 1].isalnum() or name[i - 1] in "_:"):
            m = PREFIX.match(name, i)
            if m:
                if not (any(generic for generic, _ in open_) or (open_ and open_[-1][1])):
                    out.append(m.group(0))
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def uleb(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def vec_name(text):
    raw = text.encode()
    return uleb(len(raw)) + raw


def function_names(sub):
    count, i = leb(sub, 0)
    entries = []
    for _ in range(count):
        index, i = leb(sub, i)
        length, i = leb(sub, i)
        entries.append((index, sub[i : i + length].decode()))
        i += length
    return entries


def short_names(entries):
    short = {index: shorten(name) for index, name in entries}
    sources = {}
    for index, name in entries:
        sources.setdefault(short[index], set()).add(name)
    entries = [(index, short[index] if len(sources[short[index]]) == 1 else name) for index, name in entries]
    return uleb(len(entries)) + b"".join(uleb(index) + vec_name(name) for index, name in entries)


def rewrite(data, start, edit):
    """`data` with each section from `start` on (or subsection: both are an id byte and a
    sized payload) replaced by `edit(id, payload)`."""
    out = bytearray(data[:start])
    i = start
    while i < len(data):
        kind = data[i]
        size, j = leb(data, i + 1)
        body = edit(kind, data[j : j + size])
        out += bytes([kind]) + uleb(len(body)) + body
        i = j + size
    return bytes(out)


def function_names_shortened(kind, sub):
    """Subsection 1 of the `name` section (functions) shortened; the others as they are."""
    return short_names(function_names(sub)) if kind == 1 else sub


def name_section_shortened(kind, body):
    """The custom section `name` with its function names shortened; the others as they are."""
    if kind != 0:
        return body
    length, k = leb(body, 0)
    if body[k : k + length] != b"name":
        return body
    return body[: k + length] + rewrite(body[k + length :], 0, function_names_shortened)


def main(source, target):
    data = open(source, "rb").read()
    # After the module's magic number and version (8 bytes).
    open(target, "wb").write(rewrite(data, 8, name_section_shortened))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
