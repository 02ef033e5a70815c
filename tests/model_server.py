#!/usr/bin/env python3
"""Scripted OpenAI-compatible (and Ollama-native) model server for Cadre's tests.

Standard library only.

    python3 tests/model_server.py --port 0 [--port-file FILE] [--script FILE]

Binds 127.0.0.1 (--host: another address), prints "LISTENING <port>" on stdout and, with --port-file,
writes the port there atomically. Exits when its parent process goes away.

Model endpoints
  POST /v1/chat/completions, or any path ending in /chat/completions
       OpenAI chat completions; SSE when the request has "stream": true.
  POST /api/chat   Ollama native; NDJSON when "stream" is true or absent.
  GET  /v1/models  one model, "scripted-model".
  GET  /props      llama.cpp's server properties (default_generation_settings.n_ctx),
                   once /_context set a context with "server": "llamacpp"; else 404
  POST /api/show   Ollama's model details (model_info.<arch>.context_length and
                   parameters "num_ctx N"), once /_context set "server": "ollama"

Control endpoints
  POST /_script    {"responses": [R, ...], "default": R}  replaces the queue
                   (and the default when given)
  POST /_enqueue   R, or {"responses": [R, ...]}           appends to the queue
  POST /_reset     clears the queue, the recorded requests, the default and the context
  POST /_context   {"n_ctx": N, "server": "llamacpp" | "ollama" | "none"}: the context the
                   server reports (see /props, /api/show; "none": not reported) and enforces: a model
                   request whose messages and tools (JSON, bytes / 4) pass N tokens
                   gets HTTP 400 "the request exceeds the available context size"
  GET  /_probes    {"probes": [{"method", "path", "body"}, ...]}: /props and /api/show requests
  GET  /_requests  {"requests": [record, ...]}
  GET  /_health    {"ok": true}

Each model request takes the first queued R whose "match" is a substring of
the last user message, else the first queued R without "match", else the
default. The initial default answers "Hello from the scripted model."
streamed word by word. An answer's "text" longer than the request's
max_tokens is cut there (tokens counted as bytes / 4), as real servers do.

A response R (every key optional):
  status               HTTP status (200)
  headers              {name: value} extra response headers
  text                 answer text (split into word pieces when streamed)
  chunks               explicit answer pieces; overrides the split of "text"
  thinking             reasoning text: delta.reasoning_content (SSE),
                       message.reasoning_content (JSON), message.thinking (Ollama)
  thinking_chunks      explicit thinking pieces
  tool_calls           [{"name", "arguments" (string or object), "id"}]; "{index}" in
                       an arguments string becomes the request's index (a model
                       that never makes the same call twice)
  finish_reason        ("tool_calls" when tool_calls, else "stop")
  usage                {"prompt_tokens", "completion_tokens", "total_tokens"};
                       counted when absent
  send_usage           false: never send usage
  stream               true/false: overrides the request's "stream" flag
  delay_ms             sleep before each streamed piece
  first_byte_delay_ms  sleep before the status line
  wait_for_requests    N: answer only once N model requests have been recorded
                       since the last reset (or after wait_timeout_ms, default
                       10000); proves that requests are in flight together
  reset_after          like cut_after, but the connection is reset (TCP RST)
  raw_b64              like raw, the body given in base64 (any bytes: invalid UTF-8, say)
  cut_after            close the socket after this many answer/thinking pieces,
                       without [DONE] and without the terminating 0-chunk
  omit_done            true: no "data: [DONE]" / no done:true line
  error_in_stream      {"message", "type", "code"}: sent as a data: {"error":...}
                       event (NDJSON: {"error": message}) after the pieces
  error_body           JSON body for a non-2xx status (a default one otherwise)
  retry_after          value of a Retry-After header
  match                see above
  hang                 true: send the headers, then nothing until the client goes away
  forever              until the client goes away, every "every_ms" (default 200):
                       "headers" sends one more header line (the headers never end);
                       SSE only, after the headers: "ping" a keep-alive comment
                       (": ping"), "empty" an empty event ("data: "), "trickle" one
                       text delta ("x ")
  every_ms             see forever
  omit_finish          true: no event with a finish_reason (SSE); with omit_done, a
                       stream that just ends (Ollama NDJSON: omit_done alone)
  hang_before_headers  true: send nothing at all until the client goes away
  raw                  exact body text, sent with Content-Length (Content-Type
                       from "headers", else application/json)

A request record:
  {"index", "method", "path", "headers" (Authorization replaced by
   "Bearer <len N>"), "authorization_sha256" (hex sha256 of the whole
   Authorization header value, or null), "body" (parsed JSON, or the raw text
   when it is not JSON), "t_start", "t_end" (time.monotonic() seconds; t_end
   null while the response is still being sent), "response_index" (position
   of the scripted response among all ever queued since the last reset, null
   for the default), "disconnected" (the client went away mid-response)}
"""

import argparse
import base64
import hashlib
import json
import os
import re
import select
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INITIAL_DEFAULT = {"text": "Hello from the scripted model."}


class ClientGone(Exception):
    """The client closed the connection."""


class State:
    """Script queue and request log, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.recorded = threading.Condition(self.lock)
        self.queue = []        # list of (index, response)
        self.next_index = 0
        self.default = dict(INITIAL_DEFAULT)
        self.requests = []
        self.context = None    # {"n_ctx", "server"} from /_context
        self.probes = []

    def reset(self):
        with self.lock:
            self.queue = []
            self.next_index = 0
            self.default = dict(INITIAL_DEFAULT)
            self.requests = []
            self.context = None
            self.probes = []

    def enqueue(self, responses):
        with self.lock:
            for r in responses:
                if not isinstance(r, dict):
                    raise ValueError("a response must be a JSON object")
                self.queue.append((self.next_index, r))
                self.next_index += 1

    def set_script(self, script):
        responses = script.get("responses", [])
        if not isinstance(responses, list):
            raise ValueError('"responses" must be a list')
        with self.lock:
            self.queue = []
        self.enqueue(responses)
        if "default" in script:
            if not isinstance(script["default"], dict):
                raise ValueError('"default" must be an object')
            with self.lock:
                self.default = script["default"]

    def pick(self, last_user):
        with self.lock:
            for pos, (idx, r) in enumerate(self.queue):
                m = r.get("match")
                if m is not None and last_user is not None and m in last_user:
                    del self.queue[pos]
                    return idx, r
            for pos, (idx, r) in enumerate(self.queue):
                if r.get("match") is None:
                    del self.queue[pos]
                    return idx, r
            return None, self.default

    def record(self, rec):
        with self.lock:
            rec["index"] = len(self.requests)
            self.requests.append(rec)
            self.recorded.notify_all()

    def wait_for_requests(self, n, timeout):
        """Waits until n model requests were recorded; False on timeout."""
        end = time.monotonic() + timeout
        with self.lock:
            while len(self.requests) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.recorded.wait(min(left, 0.05))
            return True

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.requests))


def last_user_text(body):
    if not isinstance(body, dict):
        return None
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return None
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return "".join(p.get("text", "") for p in c if isinstance(p, dict))
            return ""
    return None


def split_words(text):
    return re.findall(r"\s*\S+\s*|\s+", text) if text else []


def limit_to_max_tokens(body, r):
    """As a real server does: an answer ("text") longer than the request's
    max_tokens (max_completion_tokens, Ollama's options.num_predict) is cut
    there, bytes / 4, with finish_reason "length"."""
    if not isinstance(body, dict) or "text" not in r or "chunks" in r:
        return r
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or \
        (body.get("options") or {}).get("num_predict")
    if not isinstance(cap, int) or cap <= 0 or count_tokens(r["text"]) <= cap:
        return r
    r = dict(r)
    r["text"] = r["text"][:cap * 4]
    r.setdefault("finish_reason", "length")
    return r


def count_tokens(s):
    return max(1, (len(s) + 3) // 4) if s else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: each piece leaves when written. With Nagle a small piece can wait in the send queue
    # for the ACK of the one before (delayed on a kept-alive connection), and a reset_after would then
    # discard pieces the script says were sent.
    disable_nagle_algorithm = True
    server_version = "CadreModelServer/1.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- low-level output ---------------------------------------------------

    def _write(self, data):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            raise ClientGone() from e

    def _chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if data:
            self._write(b"%x\r\n" % len(data) + data + b"\r\n")

    def _end_chunks(self):
        self._write(b"0\r\n\r\n")

    def _client_gone(self, timeout):
        """Waits up to timeout seconds; True when the client closed the connection."""
        try:
            r, _, _ = select.select([self.connection], [], [], timeout)
            if r:
                data = self.connection.recv(4096, socket.MSG_PEEK)
                return data == b""
        except (OSError, ValueError):
            return True
        return False

    def _sleep(self, ms):
        end = time.monotonic() + ms / 1000.0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._client_gone(min(left, 0.05)):
                raise ClientGone()

    def _hang(self):
        while not self._client_gone(0.1):
            pass
        raise ClientGone()

    def _cut(self, reset=False):
        """Closes the connection abruptly: no terminating chunk; with reset, a TCP RST
        (SO_LINGER 0, then close) instead of an orderly shutdown."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start(self, status, headers, ctype, length=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, str(v))
        try:
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            raise ClientGone() from e

    def _send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self._start(status, headers or {}, "application/json", len(data))
        self._write(data)

    # ---- request plumbing ---------------------------------------------------

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _headers_record(self):
        hdrs = {}
        auth_sha = None
        for k, v in self.headers.items():
            if k.lower() == "authorization":
                auth_sha = hashlib.sha256(v.encode()).hexdigest()
                scheme = v.split(" ", 1)[0] if " " in v else ""
                hdrs[k] = "%s <len %d>" % (scheme, len(v) - len(scheme) - (1 if scheme else 0))
            else:
                hdrs[k] = v
        return hdrs, auth_sha

    def do_GET(self):
        st = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/_health":
            self._send_json(200, {"ok": True})
        elif path == "/_requests":
            self._send_json(200, {"requests": st.snapshot()})
        elif path == "/_probes":
            with st.lock:
                self._send_json(200, {"probes": list(st.probes)})
        elif path == "/props":
            with st.lock:
                ctx = st.context
                st.probes.append({"method": "GET", "path": path, "body": None})
            if ctx and ctx.get("server") == "llamacpp":
                self._send_json(200, {"default_generation_settings": {"n_ctx": ctx["n_ctx"], "temperature": 0.8},
                                      "total_slots": 1, "model_path": "scripted.gguf"})
            else:
                self._send_json(404, {"error": {"message": "File Not Found", "type": "not_found_error"}})
        elif path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "scripted-model", "object": "model", "owned_by": "cadre-tests"}]})
        else:
            self._send_json(404, {"error": {"message": "no such path: " + path, "type": "not_found"}})

    def do_POST(self):
        try:
            self._post()
        except ClientGone:
            self.close_connection = True

    def _post(self):
        st = self.server.state
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        if path in ("/_script", "/_enqueue", "/_reset", "/_context"):
            self._control(path, raw)
            return
        if path == "/api/show":
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (ValueError, UnicodeDecodeError):
                body = None
            with st.lock:
                ctx = st.context
                st.probes.append({"method": "POST", "path": path, "body": body})
            if ctx and ctx.get("server") == "ollama":
                self._send_json(200, {"parameters": "num_ctx                        %d\nstop \"<|eot|>\"" % ctx["n_ctx"],
                                      "model_info": {"general.architecture": "llama",
                                                     "llama.context_length": 131072}})
            else:
                self._send_json(404, {"error": "model not found"})
            return
        is_openai = path.endswith("/chat/completions")
        is_ollama = path == "/api/chat" or path.endswith("/api/chat")
        if not (is_openai or is_ollama):
            self._send_json(404, {"error": {"message": "no such path: " + path, "type": "not_found"}})
            return
        hdrs, auth_sha = self._headers_record()
        rec = {"method": "POST", "path": path, "headers": hdrs, "authorization_sha256": auth_sha,
               "body": None, "t_start": time.monotonic(), "t_end": None, "response_index": None,
               "disconnected": False}
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
            rec["body"] = body
        except (ValueError, UnicodeDecodeError):
            rec["body"] = raw.decode("utf-8", "replace")
            body = None
        with st.lock:
            ctx = st.context
        if ctx and isinstance(body, dict):
            used = count_tokens(json.dumps(body.get("messages", []))) + \
                count_tokens(json.dumps(body["tools"]) if body.get("tools") else "")
            rec["prompt_estimate"] = used
            if used > ctx["n_ctx"]:
                st.record(rec)
                self._send_json(400, {"error": {"code": 400, "type": "exceed_context_size_error",
                                                "message": "the request exceeds the available context size, "
                                                           "try increasing it (%d > %d)" % (used, ctx["n_ctx"])}})
                rec["t_end"] = time.monotonic()
                return
        idx, resp = st.pick(last_user_text(body))
        rec["response_index"] = idx
        st.record(rec)
        self.request_index = rec["index"]
        try:
            if not isinstance(body, dict):
                self._send_json(400, {"error": {"message": "request body is not a JSON object",
                                                "type": "invalid_request_error"}})
            else:
                self._respond(body, resp, is_ollama)
        except ClientGone:
            rec["disconnected"] = True
            self.close_connection = True
            raise
        finally:
            rec["t_end"] = time.monotonic()

    def _control(self, path, raw):
        st = self.server.state
        try:
            obj = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            if path == "/_reset":
                st.reset()
            elif path == "/_script":
                if not isinstance(obj, dict):
                    raise ValueError("script must be an object")
                st.set_script(obj)
            elif path == "/_context":
                if not isinstance(obj, dict) or not isinstance(obj.get("n_ctx"), int) or \
                        obj.get("server") not in ("llamacpp", "ollama", "none"):
                    raise ValueError('context must be {"n_ctx": N, "server": "llamacpp", "ollama" or "none"}')
                with st.lock:
                    st.context = {"n_ctx": obj["n_ctx"], "server": obj["server"]}
            else:
                if isinstance(obj, dict) and "responses" in obj:
                    st.enqueue(obj["responses"])
                else:
                    st.enqueue([obj])
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"error": {"message": str(e)}})
            return
        self._send_json(200, {"ok": True})

    # ---- model responses ----------------------------------------------------

    def _respond(self, body, r, ollama):
        r = limit_to_max_tokens(body, r)
        if r.get("wait_for_requests"):
            end = time.monotonic() + r.get("wait_timeout_ms", 10000) / 1000.0
            while not self.server.state.wait_for_requests(int(r["wait_for_requests"]), 0.05):
                if self._client_gone(0) or time.monotonic() > end:
                    break
        if r.get("first_byte_delay_ms"):
            self._sleep(r["first_byte_delay_ms"])
        if r.get("hang_before_headers"):
            self._hang()
        if r.get("forever") == "headers":
            self._headers_forever(r.get("every_ms", 200))
        status = int(r.get("status", 200))
        headers = dict(r.get("headers") or {})
        if r.get("retry_after") is not None:
            headers["Retry-After"] = str(r["retry_after"])
        if "raw" in r or "raw_b64" in r:
            data = base64.b64decode(r["raw_b64"]) if "raw_b64" in r else r["raw"].encode()
            ctype = headers.pop("Content-Type", headers.pop("content-type", "application/json"))
            self._start(status, headers, ctype, len(data))
            if r.get("hang"):
                self._hang()
            self._write(data)
            return
        if status < 200 or status >= 300:
            err = r.get("error_body")
            if err is None:
                if ollama:
                    err = {"error": "scripted error %d" % status}
                else:
                    err = {"error": {"message": "scripted error %d" % status,
                                     "type": "server_error", "code": None}}
            self._send_json(status, err, headers)
            return
        stream = r.get("stream", body.get("stream", ollama))
        if ollama:
            self._ollama(body, r, bool(stream), status, headers)
        elif stream:
            self._sse(body, r, status, headers)
        else:
            self._openai_json(body, r, status, headers)

    @staticmethod
    def _pieces(r):
        text = "".join(r["chunks"]) if "chunks" in r else r.get("text", "")
        tpieces = list(r["chunks"]) if "chunks" in r else split_words(text)
        thinking = "".join(r["thinking_chunks"]) if "thinking_chunks" in r else r.get("thinking", "")
        kpieces = list(r["thinking_chunks"]) if "thinking_chunks" in r else split_words(thinking)
        return text, tpieces, thinking, kpieces

    def _calls(self, r):
        out = []
        for i, c in enumerate(r.get("tool_calls") or []):
            args = c.get("arguments", "{}")
            if not isinstance(args, str):
                args = json.dumps(args)
            args = args.replace("{index}", str(getattr(self, "request_index", 0)))
            out.append({"id": c.get("id", "call_%d" % i), "name": c.get("name", "tool"),
                        "arguments": args})
        return out

    def _usage(self, body, r, text, thinking, calls):
        if "usage" in r:
            return r["usage"]
        # The prompt as a real server counts it: the messages and the tool definitions.
        p = count_tokens(json.dumps(body.get("messages", []))) + \
            (count_tokens(json.dumps(body["tools"])) if body.get("tools") else 0)
        c = count_tokens(text + thinking + "".join(x["arguments"] for x in calls))
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _sse(self, body, r, status, headers):
        text, tpieces, thinking, kpieces = self._pieces(r)
        calls = self._calls(r)
        finish = r.get("finish_reason", "tool_calls" if calls else "stop")
        model = body.get("model", "scripted-model")
        cid = "chatcmpl-scripted"
        created = int(time.time())

        def event(delta, fin=None, usage=None, choices=True):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": fin}] if choices else []
            if usage is not None:
                obj["usage"] = usage
            self._chunk("data: " + json.dumps(obj) + "\n\n")

        hdrs = {"Cache-Control": "no-cache"}
        hdrs.update(headers)
        self._start(status, hdrs, "text/event-stream", None)
        if r.get("hang"):
            self._hang()
        if r.get("forever"):
            self._forever(r["forever"], r.get("every_ms", 200), event)
        event({"role": "assistant", "content": ""})
        sent = 0
        cut = r.get("cut_after")
        reset = r.get("reset_after")
        for kind, pieces in (("reasoning_content", kpieces), ("content", tpieces)):
            for p in pieces:
                if reset is not None and sent >= reset:
                    self._cut(reset=True)
                    return
                if cut is not None and sent >= cut:
                    self._cut()
                    return
                if r.get("delay_ms"):
                    self._sleep(r["delay_ms"])
                event({kind: p})
                sent += 1
        if cut is not None and sent >= cut:
            self._cut()
            return
        for i, c in enumerate(calls):
            half = len(c["arguments"]) // 2
            event({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                   "function": {"name": c["name"], "arguments": c["arguments"][:half]}}]})
            event({"tool_calls": [{"index": i, "function": {"arguments": c["arguments"][half:]}}]})
        if r.get("error_in_stream") is not None:
            self._chunk("data: " + json.dumps({"error": r["error_in_stream"]}) + "\n\n")
        elif not r.get("omit_finish"):
            event({}, fin=finish)
            so = body.get("stream_options") or {}
            if so.get("include_usage") and r.get("send_usage", True):
                event(None, usage=self._usage(body, r, text, thinking, calls), choices=False)
        if not r.get("omit_done"):
            self._chunk("data: [DONE]\n\n")
        self._end_chunks()

    def _headers_forever(self, every_ms):
        """A status line, then one more header line every every_ms, never the blank line."""
        self.send_response(200)
        try:
            while True:
                self.send_header("X-Still-Thinking", "1")
                self.flush_headers()
                self._sleep(every_ms)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            raise ClientGone() from e

    def _forever(self, what, every_ms, event):
        """Sends something that is not an answer, every every_ms, until the client goes away."""
        while True:
            if what == "ping":
                self._chunk(": ping\n\n")
            elif what == "empty":
                self._chunk("data: \n\n")
            else:
                event({"content": "x "})
            self._sleep(every_ms)

    def _openai_json(self, body, r, status, headers):
        text, _, thinking, _ = self._pieces(r)
        calls = self._calls(r)
        msg = {"role": "assistant", "content": text if (text or not calls) else None}
        if thinking:
            msg["reasoning_content"] = thinking
        if calls:
            msg["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for c in calls]
        obj = {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
               "model": body.get("model", "scripted-model"),
               "choices": [{"index": 0, "message": msg,
                            "finish_reason": r.get("finish_reason", "tool_calls" if calls else "stop")}]}
        if r.get("error_in_stream") is not None:
            obj = {"error": r["error_in_stream"]}
        elif r.get("send_usage", True):
            obj["usage"] = self._usage(body, r, text, thinking, calls)
        if r.get("hang"):
            data = json.dumps(obj).encode()
            self._start(status, headers, "application/json", len(data))
            self._hang()
        self._send_json(status, obj, headers)

    def _ollama(self, body, r, stream, status, headers):
        text, tpieces, thinking, kpieces = self._pieces(r)
        calls = self._calls(r)
        model = body.get("model", "scripted-model")
        usage = self._usage(body, r, text, thinking, calls)

        def line(msg, done=False):
            obj = {"model": model, "created_at": "2025-01-01T00:00:00Z", "message": msg, "done": done}
            if done:
                obj["done_reason"] = r.get("finish_reason", "stop")
                if r.get("send_usage", True):
                    obj["prompt_eval_count"] = usage.get("prompt_tokens", 0)
                    obj["eval_count"] = usage.get("completion_tokens", 0)
            return obj

        ncalls = [{"function": {"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}}
                  for c in calls]
        if not stream:
            msg = {"role": "assistant", "content": text}
            if thinking:
                msg["thinking"] = thinking
            if ncalls:
                msg["tool_calls"] = ncalls
            obj = line(msg, done=True)
            if r.get("error_in_stream") is not None:
                obj = {"error": r["error_in_stream"].get("message", "error")}
            self._send_json(status, obj, headers)
            return
        self._start(status, headers, "application/x-ndjson", None)
        if r.get("hang"):
            self._hang()
        sent = 0
        cut = r.get("cut_after")
        for kind, pieces in (("thinking", kpieces), ("content", tpieces)):
            for p in pieces:
                if cut is not None and sent >= cut:
                    self._cut()
                    return
                if r.get("delay_ms"):
                    self._sleep(r["delay_ms"])
                msg = {"role": "assistant", "content": ""}
                msg[kind] = p
                self._chunk(json.dumps(line(msg)) + "\n")
                sent += 1
        if cut is not None and sent >= cut:
            self._cut()
            return
        if ncalls:
            self._chunk(json.dumps(line({"role": "assistant", "content": "", "tool_calls": ncalls})) + "\n")
        if r.get("error_in_stream") is not None:
            self._chunk(json.dumps({"error": r["error_in_stream"].get("message", "error")}) + "\n")
        elif not r.get("omit_done"):
            self._chunk(json.dumps(line({"role": "assistant", "content": ""}, done=True)) + "\n")
        self._end_chunks()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that vanished is normal here; anything else goes to stderr.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ClientGone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def watch_parent(ppid):
    while True:
        time.sleep(0.5)
        if os.getppid() != ppid:
            os._exit(0)


def main():
    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible model server for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port-file")
    ap.add_argument("--script", help="JSON file with an initial {responses, default}")
    args = ap.parse_args()

    srv = Server((args.host, args.port), Handler)
    srv.state = State()
    if args.script:
        with open(args.script) as f:
            srv.state.set_script(json.load(f))
    port = srv.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    print("LISTENING %d" % port, flush=True)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
