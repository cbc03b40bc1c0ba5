"""A stand-in OpenAI-compatible engine for the gateway's and supervisor's unit tests ONLY.

It answers ``/health`` and ``/v1/chat/completions`` (streamed as SSE in ``--chunks`` chunks,
``--delay`` seconds apart, or whole) with ``<name> says <n>`` texts, so a test can tell which
engine answered and hold a stream open across a switch. The real engine
(``transformers serve``) is exercised by ``bench/serve.py``; it takes ~40 s to start here.

    python tests/models_registry/fake_engine.py --port 18000 --name v1 [--chunks 5 --delay 0.1]
"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", default="")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--startup", type=float, default=0.0, help="seconds before it listens")
    args, _ = parser.parse_known_args()
    name = args.name or args.folder
    time.sleep(args.startup)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path in ("/health", "/v1/models"):
                return self._json(200, {"status": "ok"})
            return self._json(404, {"detail": "no"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            words = [f"{name} says {i}. " for i in range(args.chunks)]
            usage = {
                "prompt_tokens": 7,
                "completion_tokens": len(words),
                "total_tokens": 7 + len(words),
            }
            if not body.get("stream"):
                time.sleep(args.delay * len(words))
                return self._json(
                    200,
                    {
                        "id": "up-1",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "".join(words)},
                            }
                        ],
                        "usage": usage,
                    },
                )
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()

            def send(chunk):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()

            base = {"id": "up-1", "object": "chat.completion.chunk", "model": body.get("model")}
            send({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            for word in words:
                time.sleep(args.delay)
                send({**base, "choices": [{"index": 0, "delta": {"content": word}}]})
            send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                send({**base, "choices": [], "usage": usage})
            self.close_connection = True

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
