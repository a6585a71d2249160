"""code/serve.py: the API in worker processes with one SO_REUSEPORT socket each, so new connections reach all."""
import socket
import subprocess
import sys

import httpx
from harness import REPO_ROOT, ServerProcess

from nostrade.dataset import load_dataset


def test_new_connections_reach_every_worker_and_each_serves(tiny_checkpoint, processed_sample, tmp_path):
    env = {"NOSTRADE_CHECKPOINT": str(tiny_checkpoint), "NOSTRADE_DATA": str(processed_sample),
           "NOSTRADE_EVENTS": str(tmp_path / "events.db")}
    with ServerProcess(env, workers=2, reuse_port=True) as server:
        answered_by = [httpx.get(server.url + "/health", timeout=10.0).json()["pid"] for _ in range(40)]  # new each
        item_id = int(load_dataset(processed_sample).items["item_id"].iloc[0])
        answer = httpx.post(server.url + "/recommend", json={"history": [{"item_id": item_id, "feedback": 3}]},
                            timeout=10.0)
        assert answer.status_code == 200 and answer.json()["items"]
    # the kernel spreads connections by their addresses: P(a worker gets < 5 of 40) ~ 2e-7
    assert len(set(answered_by)) == 2 and min(answered_by.count(p) for p in set(answered_by)) >= 5
    assert server.process.returncode == 0  # SIGTERM stopped both workers and the parent cleanly


def test_a_port_taken_is_refused_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "serve.py"), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
