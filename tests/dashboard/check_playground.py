#!/usr/bin/env python3
"""Checks the playground as headless Chromium rendered it (stdlib only).

Usage:
  check_playground.py results DOM_HTML --url URL [--key KEY] [--png PNG] [--tts] [--ocr] [--mic]
  check_playground.py locked DOM_HTML [--refused]

results: the page at /playground?demo=1 ran its demo calls and shows their
results: the cosine of the two sentences equals the one computed here from
the server's own /v1/embeddings answer; the sim generator's echo streamed in
as one chunk per word; the sim transcriber's text with the duration of the
1 s tone the page encoded as WAV (with --mic: of the page's recording
from Chromium's fake microphone, encoded the same way); with --tts a playable WAV of the speech
model in the <audio> element; with --ocr the text drawn on the page's canvas.
Every panel and every row of the call log shows a latency in ms and an
x-brisk-cache value (hit/miss/bypass, or "—"), and the repeated embedding
call is a cache hit. --png: the screenshot is a 1280x1400 non-blank PNG.

locked: the server has API keys and the page has none (or, with --refused,
a wrong one): the key prompt shows, /v1/models answered 401 and no demo
call ran.
"""
import argparse
import json
import math
import os
import re
import sys
import urllib.request
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_page import check_png  # noqa: E402

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}
CACHE_VALUES = {"hit", "miss", "bypass", "—"}
CHAT_PROMPT = "hello from the playground demo streaming one word at a time"
SIM_TRANSCRIPT = "simulated speech from the playground"


def fail(msg):
    print(f"check_playground: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.parts = [], []

    @property
    def text(self):
        return "".join(self.parts)

    def find_all(self, pred):
        for c in self.children:
            if pred(c):
                yield c
            yield from c.find_all(pred)

    def klass(self, name):
        return next(self.find_all(lambda n: name in n.attrs.get("class", "").split()), None)


class Dom(HTMLParser):
    """Element tree with the text under each element (scripts and styles left out)."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", [], None)
        self.stack = [self.root]
        self.ids = {}
        self.skip = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.stack[-1])
        self.stack[-1].children.append(node)
        if "id" in node.attrs:
            self.ids[node.attrs["id"]] = node
        if tag in ("script", "style"):
            self.skip += 1
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self.skip:
            return
        for n in self.stack:
            n.parts.append(data)

    def __getitem__(self, id_):
        node = self.ids.get(id_)
        if node is None:
            fail(f"no element #{id_} in the DOM")
        return node


def visible(node):
    return "display: none" not in node.attrs.get("style", "").replace("display:none", "display: none")


def check_panel(dom, panel):
    sec = dom[panel]
    err = dom[f"{panel}-error"].text.strip()
    if sec.attrs.get("data-state") != "done" or err:
        fail(f"{panel} panel state {sec.attrs.get('data-state')!r}, error {err!r}")
    meta = dom[f"{panel}-meta"]
    lat, cache = meta.klass("lat"), meta.klass("cache")
    if not re.search(r"\d+(\.\d+)? (ms|s)\b", lat.text) or float(lat.attrs.get("data-ms", "0")) <= 0:
        fail(f"{panel} shows latency {lat.text!r}")
    if cache.text.strip() not in CACHE_VALUES:
        fail(f"{panel} shows cache {cache.text!r}")
    return lat.text.strip(), cache.text.strip()


def post_json(url, path, body, key):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json",
                                          "cache-control": "no-store"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def check_results(dom, args):
    if next(dom.root.find_all(lambda n: n.tag == "body")).attrs.get("data-demo") != "done":
        fail("the demo did not finish (body data-demo != done)")
    if visible(dom["key-prompt"]) and dom["key-prompt"].text.strip():
        fail("the key prompt shows: " + dom["key-prompt"].text.strip())

    # Embeddings: the page's cosine is the server's vectors' cosine.
    lat, cache = check_panel(dom, "embed")
    shown = dom["embed-cosine"]
    model = shown.attrs.get("data-model")
    try:
        value = float(shown.attrs["data-value"])
    except (KeyError, ValueError):
        fail(f"no cosine shown: {shown.text!r}")
    if not re.fullmatch(r"-?\d\.\d{4}", shown.text.strip()) or abs(float(shown.text) - value) > 1e-4:
        fail(f"cosine text {shown.text!r} does not match its value {value}")
    sentences = [dom["embed-a"].attrs["value"], dom["embed-b"].attrs["value"]]
    ref = post_json(args.url, "/v1/embeddings", {"model": model, "input": sentences}, args.key)
    vecs = [d["embedding"] for d in sorted(ref["data"], key=lambda d: d["index"])]
    expected = cosine(*vecs)
    if abs(value - expected) > 1e-5:
        fail(f"page cosine {value} != {expected} computed from {model}'s vectors")
    if f"{len(vecs[0])} dimensions" not in dom["embed-info"].text:
        fail(f"embedding info {dom['embed-info'].text!r} lacks {len(vecs[0])} dimensions")
    print(f"check_playground: embeddings ok: {model} cosine {value:.4f} (latency {lat}, cache {cache})")

    # Chat: the sim echoes the prompt's words, one SSE chunk per word.
    lat, cache = check_panel(dom, "chat")
    replies = list(dom["chat-log"].find_all(lambda n: n.tag == "div" and "assistant" in n.attrs.get("class", "")))
    if len(replies) != 1:
        fail(f"{len(replies)} assistant messages, expected 1")
    text_node = replies[0].klass("text")
    if text_node.text != CHAT_PROMPT:
        fail(f"streamed reply {text_node.text!r}, expected the echo {CHAT_PROMPT!r}")
    chunks = int(text_node.attrs.get("data-chunks", "0"))
    if chunks != len(CHAT_PROMPT.split()):
        fail(f"reply arrived in {chunks} chunks, expected {len(CHAT_PROMPT.split())} (one per token)")
    if not re.search(r"first token \d+ ms · total \d+(\.\d+)? (ms|s) · \d+ chunks · stop", lat):
        fail(f"chat latency line {lat!r}")
    print(f"check_playground: chat ok: {chunks} chunks streamed ({lat}, cache {cache})")

    # Transcription of the page's own WAV (1 s tone, resampled to 16 kHz).
    lat, cache = check_panel(dom, "asr")
    if dom["asr-output"].text.strip() != SIM_TRANSCRIPT:
        fail(f"transcript {dom['asr-output'].text!r}")
    duration = float(dom["asr-info"].attrs.get("data-duration") or "nan")
    if args.mic:
        # The last transcription is the recording from the fake microphone.
        recorded = float(dom["asr-rec-state"].attrs.get("data-seconds") or "nan")
        if not dom["asr-info"].text.startswith("recording.wav") or not recorded > 1.0 \
                or not abs(duration - recorded) < 0.02:
            fail(f"microphone: recorded {recorded} s, the server heard {duration} s "
                 f"({dom['asr-info'].text!r})")
        print(f"check_playground: microphone ok: {dom['asr-rec-state'].text.strip()!r}, "
              f"server heard {duration:.3f} s (latency {lat}, cache {cache})")
    elif not dom["asr-info"].text.startswith("tone.wav") or not abs(duration - 1.0) < 0.01:
        fail(f"the server heard {duration} s of the page's 1 s WAV ({dom['asr-info'].text!r})")
    else:
        print(f"check_playground: transcription ok: {duration:.3f} s WAV (latency {lat}, cache {cache})")

    if args.tts:
        lat, cache = check_panel(dom, "tts")
        seconds = float(dom["tts-info"].attrs.get("data-seconds") or "nan")
        audio = dom["tts-audio"]
        media = float(audio.attrs.get("data-media-duration") or "nan")
        if not audio.attrs.get("src", "").startswith("blob:"):
            fail(f"audio element src {audio.attrs.get('src')!r} is not a blob URL")
        if not seconds > 0.5 or not abs(media - seconds) < 0.05:
            fail(f"speech: WAV header says {seconds} s, the browser read {media} s "
                 f"(error {audio.attrs.get('data-media-error')})")
        print(f"check_playground: speech ok: {seconds:.2f} s WAV playable (latency {lat}, cache {cache})")
    elif dom["tts"].attrs.get("data-models") != "0":
        fail("a speech model is listed but --tts was not given")

    if args.ocr:
        lat, cache = check_panel(dom, "ocr")
        text = dom["ocr-output"].text
        if "BRISK" not in text.upper() or "2026" not in text:
            fail(f"OCR read {text!r} from the canvas drawing of 'BRISK 2026'")
        print(f"check_playground: OCR ok: {text.strip()!r} (latency {lat}, cache {cache})")
    elif dom["ocr"].attrs.get("data-models") != "0":
        fail("an OCR model is listed but --ocr was not given")

    # The call log: one row per call, each with a latency and a cache value.
    rows = list(dom["calls"].find_all(lambda n: n.tag == "tr" and "data-call" in n.attrs))
    by_call = {}
    for r in rows:
        cells = [c for c in r.children if c.tag == "td"]
        if len(cells) != 6:
            fail(f"call row with {len(cells)} cells")
        status, ms, cache = cells[3].text.strip(), cells[4].attrs.get("data-ms"), cells[5].text.strip()
        if status != "200" or float(ms or "0") <= 0 or cache not in CACHE_VALUES:
            fail(f"call {r.attrs['data-call']}: status {status}, {ms} ms, cache {cache!r}")
        by_call.setdefault(r.attrs["data-call"], []).append(cache)
    want = {"GET /v1/models": 1, "embeddings": 2, "chat (stream)": 1, "transcription": 1 + args.mic,
            "speech": int(args.tts), "ocr": int(args.ocr)}
    got = {k: len(by_call.get(k, [])) for k in want}
    if got != want:
        fail(f"calls logged {got}, expected {want}")
    if sorted(by_call["embeddings"]) != ["hit", "miss"]:
        fail(f"the two identical embedding calls show cache {by_call['embeddings']}, expected miss then hit")
    print(f"check_playground: call log ok: {len(rows)} calls, {by_call}")


def check_locked(dom, args):
    prompt = dom["key-prompt"]
    text = prompt.text.strip()
    if not visible(prompt) or not text:
        fail("no key prompt shown")
    want = "The API key was refused" if args.refused else "This server needs an API key"
    if want not in text:
        fail(f"key prompt says {text!r}, expected {want!r}")
    body = next(dom.root.find_all(lambda n: n.tag == "body"))
    if body.attrs.get("data-auth") != "needed" or body.attrs.get("data-demo"):
        fail(f"body data-auth={body.attrs.get('data-auth')!r} data-demo={body.attrs.get('data-demo')!r}")
    state = dom["key-state"].text.strip()
    if state != ("key refused" if args.refused else "key needed"):
        fail(f"key state pill says {state!r}")
    rows = list(dom["calls"].find_all(lambda n: n.tag == "tr" and "data-call" in n.attrs))
    calls = [(r.attrs["data-call"], [c.text.strip() for c in r.children if c.tag == "td"][3]) for r in rows]
    if calls != [("GET /v1/models", "401")]:
        fail(f"calls {calls}, expected only GET /v1/models answered 401")
    if dom["embed-cosine"].text.strip() != "—" or dom["chat-log"].text.strip():
        fail("results shown without a key")
    print(f"check_playground: locked ok: {text!r}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["results", "locked"])
    ap.add_argument("dom")
    ap.add_argument("--url")
    ap.add_argument("--key")
    ap.add_argument("--png")
    ap.add_argument("--tts", action="store_true")
    ap.add_argument("--ocr", action="store_true")
    ap.add_argument("--mic", action="store_true")
    ap.add_argument("--refused", action="store_true")
    args = ap.parse_args()
    with open(args.dom, encoding="utf-8") as f:
        dom = Dom(f.read())
    if args.mode == "results":
        if not args.url:
            fail("results needs --url")
        check_results(dom, args)
    else:
        check_locked(dom, args)
    if args.png:
        check_png(args.png, 1280, 1400)
