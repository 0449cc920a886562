#!/usr/bin/env python3
"""Writes tests/fixtures/openai_request_fields.json: the request fields of
the OpenAI endpoints brisk serves, read from OpenAI's own OpenAPI document
(github.com/openai/openai-openapi, openapi.json). The test in
crates/brisk-server/src/api/openai_fields.rs checks that brisk's table
lists exactly these fields, each honoured or refused.

    python3 scripts/gen_openai_fields.py path/to/openapi.json [commit]
"""

import json
import os
import sys

ENDPOINTS = [
    ("POST /v1/chat/completions", "/chat/completions"),
    ("POST /v1/completions", "/completions"),
    ("POST /v1/embeddings", "/embeddings"),
    ("POST /v1/audio/transcriptions", "/audio/transcriptions"),
    ("POST /v1/audio/translations", "/audio/translations"),
    ("POST /v1/audio/speech", "/audio/speech"),
]


def main():
    spec = json.load(open(sys.argv[1]))
    commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
    schemas = spec["components"]["schemas"]

    def resolve(s):
        while "$ref" in s:
            s = schemas[s["$ref"].split("/")[-1]]
        return s

    def props(s):
        s = resolve(s)
        out = {}
        for k in ("allOf", "anyOf", "oneOf"):
            for sub in s.get(k, []):
                out.update(props(sub))
        out.update(s.get("properties", {}))
        return out

    fields = {}
    for name, path in ENDPOINTS:
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        media = next(iter(content))
        fields[name] = sorted(props(content[media]["schema"]))
    out = {"source": f"openai/openai-openapi openapi.json at {commit}", "fields": fields}
    dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "openai_request_fields.json")
    with open(dest, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
