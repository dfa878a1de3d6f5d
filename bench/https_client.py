"""Client CPU per request over HTTPS: the lean transport against urllib3 (issue 12).

A TLS server in a child process (so its CPU is not counted) answers every POST with a ~2 KB
JSON body; the measured process sends N requests of ~30 KB (a 25-item BatchWriteItem) over one
keep-alive connection with each client and reports CPU (user + sys) per request and per item.

    PYTHONPATH=src .venv/bin/python bench/https_client.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alternator_migrator.aws.transport import HttpPool  # noqa: E402

BODY = b'{"UnprocessedItems":{}' + b" " * 2000 + b"}"
REQUEST = b'{"RequestItems":' + b"x" * 30_000 + b"}"


def _server(port_q: mp.Queue, cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.create_server(("127.0.0.1", 0))
    port_q.put(lsock.getsockname()[1])
    answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY
    while True:
        conn, _ = lsock.accept()
        s = ctx.wrap_socket(conn, server_side=True)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise EOFError
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buf) < n:
                    buf += s.recv(65536)
                buf = buf[n:]
                s.sendall(answer)
        except (EOFError, OSError):
            s.close()


def main() -> int:
    import trustme
    import urllib3

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    q: mp.Queue = mp.Queue()
    proc = mp.Process(target=_server, args=(q, str(tmp / "cert.pem"), str(tmp / "key.pem")))
    proc.daemon = True
    proc.start()
    port = q.get()
    url = f"https://127.0.0.1:{port}"
    headers = {"content-type": "application/x-amz-json-1.0", "x-amz-target": "X.BatchWriteItem"}

    pool = HttpPool(url, ca_bundle=str(tmp / "ca.pem"))
    u3 = urllib3.HTTPSConnectionPool("127.0.0.1", port, maxsize=1, ca_certs=str(tmp / "ca.pem"))

    def lean() -> bytes:
        return pool.post(headers, REQUEST).body

    def with_urllib3() -> bytes:
        r = u3.urlopen("POST", "/", body=REQUEST, headers=headers, preload_content=False)
        data = r.read()
        r.release_conn()
        return bytes(data)

    for name, fn in (("lean transport", lean), ("urllib3 " + urllib3.__version__, with_urllib3)):
        for _ in range(50):
            assert fn() == BODY
        c0, t0 = time.process_time(), time.monotonic()
        for _ in range(args.requests):
            fn()
        cpu = time.process_time() - c0
        wall = time.monotonic() - t0
        pool.close()  # the server serves one connection at a time
        print(
            f"{name:>16}: {cpu / args.requests * 1e6:6.1f} us CPU/request, "
            f"{cpu / args.requests / 25 * 1e6:5.2f} us/item (25 items), {args.requests / wall:,.0f} req/s"
        )
    proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
