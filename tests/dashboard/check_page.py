#!/usr/bin/env python3
"""Checks the dashboard as headless Chromium rendered it (stdlib only).

Usage: check_page.py [--cache] DOM_HTML SCREENSHOT_PNG MODEL [MODEL ...]

DOM: every MODEL has a row filled in by the page's JavaScript, the startup
timeline has one load bar per loaded model, traffic to /v1/embeddings shows
in the endpoint table, the readiness pill says "ready" and the error box is
hidden. The cache panel shows a hit rate and the memory tier with
--cache (the server has /v1/cache/stats), else "n/a". PNG: the expected size, and not a blank page (many distinct colours,
a good share of pixels away from the background).
"""
import re
import struct
import sys
import zlib


def fail(msg):
    print(f"check_page: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check_cache(html, has_cache):
    card = re.search(r'<div class="value" id="c-cache">(.*?)</div>', html, re.S)
    value = card.group(1).strip() if card else None
    if has_cache:
        if not value or not re.fullmatch(r"\d+(\.\d)?%", value):
            fail(f"cache hit rate card shows {value!r}, expected a percentage")
        if 'data-tier="memory"' not in html:
            fail("cache table has no memory tier row")
    elif value != "n/a":
        fail(f"cache hit rate card shows {value!r} without a cache endpoint, expected n/a")
    print(f"check_page: cache panel ok: {value}")


def check_dom(html, models):
    for m in models:
        row = re.search(r'<tr data-model="%s">(.*?)</tr>' % re.escape(m), html, re.S)
        if not row:
            fail(f"no row for model {m} (JS did not fill the table)")
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
        if len(cells) != 12:
            fail(f"row {m} has {len(cells)} cells, expected 12")
        state = re.sub(r"<[^>]+>", "", cells[3]).strip()
        if state not in {"ready", "loading", "unloaded", "evicted", "failed"}:
            fail(f"row {m} has state {state!r}")
    waiting = [re.sub(r"<[^>]+>", "", c).strip() for c in
               re.findall(r'<tr data-model="[^"]+">(?:.*?<td[^>]*>){9}(.*?)</td>', html, re.S)]
    if not any(w.isdigit() for w in waiting):
        fail(f"no model shows a brisk_queue_depth in the waiting column: {waiting}")
    bars = html.count('class="load-bar"')
    if bars < 1:
        fail("startup timeline has no load bars")
    if 'class="marker"' not in html:
        fail("startup timeline has no server milestones")
    if 'data-endpoint="/v1/embeddings"' not in html:
        fail("endpoint table does not show the /v1/embeddings traffic")
    if not re.search(r'<span class="pill ok" id="readiness"[^>]*>ready</span>', html):
        fail("readiness pill does not say ready")
    if not re.search(r'<div id="error" style="display: none;?"', html):
        fail("the page shows an error: " + (re.search(r'<div id="error"[^>]*>(.*?)</div>', html, re.S) or [None, "?"])[1])
    refreshes = re.search(r'data-refreshes="(\d+)"', html)
    if not refreshes or int(refreshes.group(1)) < 2:
        fail("the page did not poll at least twice")
    print(f"check_page: DOM ok: {len(models)} model rows, {bars} load bars, "
          f"{refreshes.group(1)} refreshes")


def png_pixels(data):
    """Decodes an 8-bit RGB/RGBA, non-interlaced PNG into rows of bytes."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("screenshot is not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = ihdr
    if depth != 8 or colour not in (2, 6) or interlace:
        fail(f"unsupported PNG layout depth={depth} colour={colour} interlace={interlace}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def check_png(path, want_w, want_h):
    with open(path, "rb") as f:
        width, height, bpp, rows = png_pixels(f.read())
    if (width, height) != (want_w, want_h):
        fail(f"screenshot is {width}x{height}, expected {want_w}x{want_h}")
    colours = {}
    for row in rows[::2]:
        for x in range(0, width * bpp, bpp * 2):
            px = row[x:x + 3]
            colours[px] = colours.get(px, 0) + 1
    total = sum(colours.values())
    background, bg_count = max(colours.items(), key=lambda kv: kv[1])
    if len(colours) < 50:
        fail(f"screenshot has only {len(colours)} colours: blank or unstyled")
    share = 1 - bg_count / total
    if share < 0.2:
        fail(f"only {share:.0%} of the screenshot differs from the background")
    print(f"check_page: PNG ok: {width}x{height}, {len(colours)} colours, "
          f"{share:.0%} off the background {background.hex()}")


if __name__ == "__main__":
    args = sys.argv[1:]
    has_cache = bool(args) and args[0] == "--cache"
    if has_cache:
        args = args[1:]
    if len(args) < 3:
        fail(__doc__)
    with open(args[0], encoding="utf-8") as f:
        # Only what the page rendered: the script's own template strings
        # must not satisfy a check.
        html = re.sub(r"<script.*?</script>", "", f.read(), flags=re.S)
    check_dom(html, args[2:])
    check_cache(html, has_cache)
    check_png(args[1], 1280, 1100)
