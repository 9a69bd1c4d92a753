"""A stand-in for the kernel's comm: what a widget sends to the front end, recorded (headless tests)."""

from __future__ import annotations


class FakeComm:
    """Set ``widget.comm = FakeComm()``; ``states()`` lists the state of every update message sent."""

    comm_id, kernel = "fake", True

    def __init__(self):
        self.sent = []

    def send(self, data, buffers=None):
        self.sent.append((data, buffers))

    def on_msg(self, callback):
        pass

    def states(self) -> list[dict]:
        return [data["state"] for data, _ in self.sent if data["method"] == "update"]
