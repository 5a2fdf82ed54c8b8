"""A realistic mix for locust (FastHttpUser, keep-alive users), run by bench/locust_run.py
against hopwire and nginx with the same routes:

    /api/small    12 B          most requests
    /api/page     16 KiB
    /static/big   1 MiB         a few
    /api/missing  404           some
    /fail         503           some (the backend's answer, passed through)

A tenth of the requests carry an inbound W3C traceparent, as from a traced caller.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task


def traceparent() -> str:
    return f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"


class Visitor(FastHttpUser):
    wait_time = between(0.0, 0.01)
    connection_timeout = 10.0
    network_timeout = 30.0

    def get(self, path: str, name: str, expect: int = 200) -> None:
        headers = {"traceparent": traceparent()} if random.random() < 0.1 else {}
        with self.client.get(path, headers=headers, name=name, catch_response=True) as resp:
            if resp.status_code == expect:
                resp.success()
            else:
                resp.failure(f"status {resp.status_code}, expected {expect}")

    @task(60)
    def small(self) -> None:
        self.get("/api/small", "12 B")

    @task(20)
    def page(self) -> None:
        self.get("/api/page", "16 KiB")

    @task(2)
    def big(self) -> None:
        self.get("/static/big", "1 MiB")

    @task(10)
    def missing(self) -> None:
        self.get("/api/missing", "404", expect=404)

    @task(8)
    def fail(self) -> None:
        self.get("/fail", "503", expect=503)
