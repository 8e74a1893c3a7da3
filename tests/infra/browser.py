"""Headless Chromium, to render status pages as a user's browser would, and a PNG reader for its screenshots."""

import os
import shutil
import subprocess

from support import read_bytes


def _find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_binary():
    """Debian's chromium, installed with apt-get on first use when missing (as root, or with sudo -n).

    So the README's one test command suffices on a fresh Debian machine; a clear failure, not a
    skip, where it cannot be installed.
    """
    found = _find_chromium()
    if found:
        return found
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"] if shutil.which("sudo") else None
    failures = []
    if as_root is not None and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            run = subprocess.run(as_root + command, env=env, capture_output=True, text=True, timeout=1800)
            if run.returncode:
                failures.append("%s: %s" % (" ".join(command), (run.stderr or run.stdout).strip()[-500:]))
        found = _find_chromium()
    if not found:
        raise RuntimeError(
            "headless Chromium is needed to render status pages and could not be installed (%s): "
            "apt-get install -y chromium" % ("; ".join(failures) or "not root, no sudo or apt-get")
        )
    return found


def chromium(url, workdir, screenshot=None, size=(1400, 1000)):
    """Render url in headless Chromium with no network; returns the DOM after layout (and a PNG if asked)."""
    base = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=" + os.path.join(workdir, "chromium-profile"),
        "--window-size=%d,%d" % size,
    ]
    if screenshot:
        subprocess.run(base + ["--screenshot=" + screenshot, url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, timeout=120, check=True)
    return dom.stdout.decode()


def png_colours(path, limit=10000):
    """Distinct colours in a PNG (8-bit RGB or RGBA, as Chromium writes them), decoded with zlib alone."""
    import struct
    import zlib

    data = read_bytes(path)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), "unexpected PNG format %r" % (header,)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    colours = set()
    for row in range(height):
        line = raw[row * (stride + 1) : (row + 1) * (stride + 1)]
        kind, current = line[0], bytearray(line[1:])
        for i in range(stride):
            left = current[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                current[i] = (current[i] + left) & 255
            elif kind == 2:
                current[i] = (current[i] + up) & 255
            elif kind == 3:
                current[i] = (current[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                current[i] = (current[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        if row % 4 == 0:
            for x in range(0, stride, channels * 4):
                colours.add(bytes(current[x : x + 3]))
                if len(colours) >= limit:
                    return colours
        previous = current
    return colours
