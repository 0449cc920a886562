#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (stdlib only).

Usage: cdp.py URL --until JS [--dom OUT.html] [--png OUT.png] [--timeout S]
              [--size WxH] [--flag=--CHROMIUM-SWITCH ...]

Opens URL in a fresh headless Chromium (--remote-debugging-pipe: JSON
messages ending in a NUL byte, commands on fd 3, answers on fd 4), waits in
real time until the JavaScript expression JS is true, then writes the DOM
(document.documentElement.outerHTML) and/or a PNG of the viewport.

Why not `chromium --dump-dom --virtual-time-budget`: virtual time stops
waiting for the network once a response's headers are in, so a streamed
body (the playground's SSE chat) is still arriving when the budget runs
out and the dump happens; here the page's own "done" marker decides.
Exits 1 when JS is not true within the timeout (the DOM is still written,
to look at).
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, flags, user_data_dir):
        cmd_r, self.cmd_w = os.pipe()   # we write commands, chromium reads fd 3
        self.out_r, out_w = os.pipe()   # chromium writes fd 4, we read
        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
        args = [chromium, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={user_data_dir}", *flags, "about:blank"]

        def fds():  # in the child: the pipe ends onto fds 3 and 4
            r, w = os.dup(cmd_r), os.dup(out_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        # pass_fds keeps 3 and 4 open past the close that follows preexec_fn.
        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self.read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def read(self, deadline):
        import select
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.out_r], [], [], left)
            if ready:
                chunk = os.read(self.out_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--until", required=True)
    ap.add_argument("--dom")
    ap.add_argument("--png")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--size", default="1280x1400")
    ap.add_argument("--flag", action="append", default=[], dest="flags",
                    help="an extra chromium flag, as --flag=--some-switch")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="brisk-cdp-") as profile:
        b = Browser(args.flags, profile)
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            b.send("Page.enable", session=session)
            b.send("Page.navigate", {"url": args.url}, session)
            deadline = time.monotonic() + args.timeout
            ok = False
            while time.monotonic() < deadline:
                r = b.send("Runtime.evaluate", {"expression": f"Boolean({args.until})",
                                                "returnByValue": True}, session)
                if r.get("result", {}).get("value") is True:
                    ok = True
                    break
                time.sleep(0.2)
            if args.dom:
                r = b.send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                "returnByValue": True}, session)
                with open(args.dom, "w", encoding="utf-8") as f:
                    f.write("<!DOCTYPE html>\n" + r["result"]["value"])
            if args.png:
                r = b.send("Page.captureScreenshot", {"format": "png"}, session)
                with open(args.png, "wb") as f:
                    f.write(base64.b64decode(r["data"]))
        finally:
            b.close()
    if not ok:
        print(f"cdp: FAIL: `{args.until}` not true after {args.timeout:.0f} s on {args.url}",
              file=sys.stderr)
        sys.exit(1)
    print(f"cdp: {args.url}: `{args.until}` after {args.timeout - (deadline - time.monotonic()):.1f} s")


if __name__ == "__main__":
    main()
