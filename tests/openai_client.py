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
import json
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
# The README's chat default; its template takes tools.
TOOLS = "qwen2.5-coder-0.5b-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
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

        def tool_call_round_trip():
            q = [{"role": "user", "content": "What is the weather like in Paris today, in celsius?"}]
            r = client.chat.completions.create(model=TOOLS, messages=q, tools=[WEATHER], temperature=0, max_tokens=80)
            choice = r.choices[0]
            assert choice.finish_reason == "tool_calls", choice
            call = choice.message.tool_calls[0]
            assert call.type == "function" and call.function.name == "get_weather", call
            args = json.loads(call.function.arguments)
            assert "Paris" in args["city"] and args["unit"] in ("celsius", "fahrenheit"), args
            follow = q + [
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 22, "sky": "sunny"})},
            ]
            # tool_choice none: Qwen2.5-Coder-0.5B calls again while tools are offered (BENCHMARKS.md).
            r2 = client.chat.completions.create(
                model=TOOLS, messages=follow, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=60
            )
            assert r2.choices[0].finish_reason == "stop" and "22" in r2.choices[0].message.content, r2

        def tool_call_stream_reassembles():
            q = [{"role": "user", "content": "What is the weather like in Paris today, in celsius?"}]
            plain = client.chat.completions.create(model=TOOLS, messages=q, tools=[WEATHER], temperature=0, max_tokens=80)
            calls = {}
            finish = None
            for chunk in client.chat.completions.create(
                model=TOOLS, messages=q, tools=[WEATHER], temperature=0, max_tokens=80, stream=True
            ):
                if not chunk.choices:
                    continue
                for d in chunk.choices[0].delta.tool_calls or []:
                    c = calls.setdefault(d.index, {"name": "", "arguments": ""})
                    c["name"] += d.function.name or ""
                    c["arguments"] += d.function.arguments or ""
                finish = chunk.choices[0].finish_reason or finish
            want = plain.choices[0].message.tool_calls[0].function
            assert finish == "tool_calls" and len(calls) == 1, (finish, calls)
            assert calls[0]["name"] == want.name, calls
            assert json.loads(calls[0]["arguments"]) == json.loads(want.arguments), (calls, want)

        def unsupported_fields_are_refused_by_name():
            try:
                client.chat.completions.create(
                    model=CHAT, messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 5}, prediction={"type": "content", "content": "x"}
                )
                raise AssertionError("expected BadRequestError")
            except openai.BadRequestError as e:
                assert e.status_code == 400 and e.param == "prediction", (e.param, e.message)

        check("models.list", models_list)
        check("embeddings float", embeddings_float)
        check("embeddings base64 (SDK default)", embeddings_default_base64)
        check("chat completion", chat_plain)
        check("chat stream == plain", chat_stream_matches_plain)
        check("errors map to SDK exceptions", errors_map_to_sdk_exceptions)
        check("audio.speech wav and pcm", speech_wav_and_pcm)
        check("tool call and its result (Qwen)", tool_call_round_trip)
        check("streamed tool call == plain", tool_call_stream_reassembles)
        check("unsupported fields refused by name", unsupported_fields_are_refused_by_name)
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
