#!/usr/bin/env python3
"""Which shipped chat models call tools well: twelve requests against a
running brisk (`--base`), greedy, tool_choice auto, three tools offered.
Eight questions need one specific tool with specific arguments; four need
no tool (the model should answer in prose). Prints a Markdown table row per
model for BENCHMARKS.md.

    python3 scripts/bench_tools.py --base http://127.0.0.1:8080 \
        --model qwen2.5-coder-0.5b-instruct --model smollm2-135m-instruct
"""

import argparse
import json
import urllib.request

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "description": "Convert an amount of money from one currency to another",
            "parameters": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number"},
                    "from_currency": {"type": "string", "description": "ISO code, e.g. USD"},
                    "to_currency": {"type": "string", "description": "ISO code, e.g. EUR"},
                },
                "required": ["amount", "from_currency", "to_currency"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Send an email",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "subject", "body"],
            },
        },
    },
]

# (question, expected tool or None, {argument: substring or number it must hold})
CASES = [
    ("What's the weather in Tokyo right now?", "get_weather", {"city": "Tokyo"}),
    ("Is it raining in London? Use fahrenheit.", "get_weather", {"city": "London", "unit": "fahrenheit"}),
    ("How warm is it in Cairo today?", "get_weather", {"city": "Cairo"}),
    ("Convert 100 US dollars to euros.", "convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}),
    ("How many Japanese yen is 50 British pounds?", "convert_currency", {"amount": 50, "from_currency": "GBP", "to_currency": "JPY"}),
    ("Change 20 EUR into CHF please.", "convert_currency", {"amount": 20, "from_currency": "EUR", "to_currency": "CHF"}),
    ("Email bob@example.com with subject 'Lunch' and say I'll be late.", "send_email", {"to": "bob@example.com", "subject": "Lunch"}),
    ("Send an email to alice@example.org titled 'Report' saying the report is done.", "send_email", {"to": "alice@example.org", "subject": "Report"}),
    ("What is 2 + 2?", None, {}),
    ("Who wrote Pride and Prejudice?", None, {}),
    ("Translate 'good morning' into French.", None, {}),
    ("Write a haiku about the sea.", None, {}),
]


def post(base, body):
    req = urllib.request.Request(
        base + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def holds(args, want):
    for k, v in want.items():
        got = args.get(k)
        if isinstance(v, (int, float)):
            if not isinstance(got, (int, float)) or abs(got - v) > 1e-9:
                return False
        elif not isinstance(got, str) or v.lower() not in got.lower():
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--model", action="append", required=True)
    args = ap.parse_args()
    print("| model | right tool, right arguments (of 8) | right tool (of 8) | prose when no tool fits (of 4) | calls that parse |")
    print("|---|---|---|---|---|")
    for model in args.model:
        exact = tool_right = prose = parsed = calls = 0
        for question, tool, want in CASES:
            r = post(base=args.base, body={
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "tools": TOOLS,
                "temperature": 0,
                "max_tokens": 120,
            })
            msg = r["choices"][0]["message"]
            tcs = msg.get("tool_calls") or []
            for c in tcs:
                calls += 1
                try:
                    json.loads(c["function"]["arguments"])
                    parsed += 1
                except ValueError:
                    pass
            if tool is None:
                prose += not tcs
                continue
            if tcs and tcs[0]["function"]["name"] == tool:
                tool_right += 1
                if holds(json.loads(tcs[0]["function"]["arguments"]), want):
                    exact += 1
        print(f"| {model} | {exact} | {tool_right} | {prose} | {parsed}/{calls} |")


if __name__ == "__main__":
    main()
