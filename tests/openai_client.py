"""End-to-end check with the official `openai` Python client against a real
`brisk serve` process on loopback.

Run by scripts/test (which installs the client into a venv) as:
    python tests/openai_client.py --bin target/debug/brisk --models-dir models

Starts brisk with tests/openai_client.toml on a free port, then exercises
models.list, embeddings (float and the SDK's default base64), chat
completions (plain and streamed) and error mapping. Prints
'N passed, M failed' and exits non-zero on any failure.
"""

import argparse
import math
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.request

import openai
from openai import OpenAI

HERE = os.path.dirname(os.path.abspath(__file__))
EMBED = "all-minilm-l6-v2"
CHAT = "smollm2-135m-instruct"
TTS = "piper-joe-medium"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_live(base, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"brisk exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v2/health/live", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("brisk did not become live")


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--models-dir", required=True)
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ, BRISK_MODELS_DIR=os.path.abspath(args.models_dir), BRISK_LOG="warn")
    proc = subprocess.Popen(
        [args.bin, "serve", "--config", os.path.join(HERE, "openai_client.toml"), "--port", str(port)],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    passed, failed = 0, 0
    try:
        wait_live(base, proc)
        client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)

        def check(name, fn):
            nonlocal passed, failed
            try:
                fn()
                passed += 1
                print(f"ok   {name}")
            except Exception:  # noqa: BLE001 - report every failure
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()

        def models_list():
            ids = {m.id for m in client.models.list()}
            assert EMBED in ids and CHAT in ids, ids

        def embeddings_float():
            r = client.embeddings.create(
                model=EMBED,
                input=["I like to eat food", "I like to eat bread", "The stock market crashed today"],
                encoding_format="float",
            )
            v = [d.embedding for d in r.data]
            assert len(v) == 3 and len(v[0]) == 384
            assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.3
            assert r.usage.prompt_tokens > 0

        def embeddings_default_base64():
            # The SDK asks for base64 by default and decodes it itself.
            a = client.embeddings.create(model=EMBED, input="hello world").data[0].embedding
            b = client.embeddings.create(model=EMBED, input="hello world", encoding_format="float").data[0].embedding
            assert len(a) == 384 and max(abs(x - y) for x, y in zip(a, b)) < 1e-6

        def chat_plain():
            r = client.chat.completions.create(
                model=CHAT,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0,
                max_tokens=40,
            )
            text = r.choices[0].message.content
            assert "Paris" in text, text
            assert r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length")

        def chat_stream_matches_plain():
            msgs = [{"role": "user", "content": "Name three colours."}]
            plain = client.chat.completions.create(model=CHAT, messages=msgs, temperature=0, max_tokens=30)
            stream = client.chat.completions.create(
                model=CHAT, messages=msgs, temperature=0, max_tokens=30, stream=True
            )
            pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
            assert "".join(pieces) == plain.choices[0].message.content, (pieces, plain)

        def errors_map_to_sdk_exceptions():
            try:
                client.embeddings.create(model="no-such-model", input="x")
                raise AssertionError("expected NotFoundError")
            except openai.NotFoundError as e:
                assert e.status_code == 404
            try:
                client.embeddings.create(model=EMBED, input=[])
                raise AssertionError("expected BadRequestError")
            except openai.BadRequestError as e:
                assert e.status_code == 400

        def speech_wav_and_pcm():
            wav = client.audio.speech.create(
                model=TTS, voice="alloy", input="Hello from brisk.", response_format="wav"
            ).content
            assert wav[:4] == b"RIFF" and len(wav) > 44 + 22050, len(wav)
            pcm = client.audio.speech.create(
                model=TTS, voice="alloy", input="Hello from brisk.", response_format="pcm"
            ).content
            # Raw 16-bit samples at 24 kHz: no header, at least half a second.
            assert pcm[:4] != b"RIFF" and len(pcm) % 2 == 0 and len(pcm) > 24000, len(pcm)
            try:
                client.audio.speech.create(model=TTS, voice="alloy", input="x", response_format="mp3")
                raise AssertionError("expected BadRequestError")
            except openai.BadRequestError as e:
                assert e.status_code == 400

        check("models.list", models_list)
        check("embeddings float", embeddings_float)
        check("embeddings base64 (SDK default)", embeddings_default_base64)
        check("chat completion", chat_plain)
        check("chat stream == plain", chat_stream_matches_plain)
        check("errors map to SDK exceptions", errors_map_to_sdk_exceptions)
        check("audio.speech wav and pcm", speech_wav_and_pcm)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
