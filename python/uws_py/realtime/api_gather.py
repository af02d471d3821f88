"""Answers from every worker for the server API's ``info`` and ``channels``: the asking worker
sends ``api.ask`` on the control topic (:mod:`uws_py.realtime.users`), each other worker answers
``api.answer`` addressed to it, and the answers are collected until as many workers answered
as Redis counts subscribers of the control channel (``PUBSUB NUMSUB``), or ``timeout`` passed.

Costs per gathering: one control message per worker, each as large as that worker's answer
(for ``channels``: its whole topic table), delivered to every worker (the control topic is one
channel), plus one ``PUBSUB NUMSUB``. Every method runs on the server's loop thread.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

import orjson

from .users import CONTROL_TOPIC

if TYPE_CHECKING:
    from .users import Users

# Seconds a gathering waits for the other workers' answers at most.
GATHER_TIMEOUT = 0.5
# What may be asked: the API's answers of one worker.
QUESTIONS = ("info", "channels")

Answers = Callable[[list[dict[str, Any]]], None]


class _Gathering:
    __slots__ = ("answers", "expected", "done")

    def __init__(self, own: dict[str, Any], done: Answers) -> None:
        self.answers = [own]
        self.expected: Optional[int] = None
        self.done = done

    def complete(self) -> bool:
        return self.expected is not None and len(self.answers) >= self.expected


class Gatherer:
    """Asks every worker and collects their answers.

    Args:
        users: the worker's user operations (their control topic and its ``ops``).
        broker: the server's broker; None answers with this worker's snapshot alone.
        worker: this worker's id, to which answers are addressed.
        snapshot: ``snapshot(question)`` -> this worker's answer.
        set_timeout: the loop's ``set_timeout(seconds, fn)``.
        redis_client: makes the redis-py asyncio client on the broker's loop (for NUMSUB),
            None when the broker is not Redis (the gathering then waits the whole timeout).
        timeout: seconds to wait at most.
    """

    def __init__(self, users: "Users", broker: Any, worker: str, snapshot: Callable[[str], dict[str, Any]],
                 set_timeout: Callable[[float, Callable[[], Any]], Any],
                 redis_client: Optional[Callable[[], Any]] = None, timeout: float = GATHER_TIMEOUT) -> None:
        self.users = users
        self.broker = broker
        self.worker = worker
        self.snapshot = snapshot
        self.set_timeout = set_timeout
        self.redis_client = redis_client
        self.timeout = timeout
        self._gathering: dict[str, _Gathering] = {}
        users.ops.update({"api.ask": self._asked, "api.answer": self._answered})

    def gather(self, question: str, done: Answers) -> None:
        """Calls done with every answer to question (this worker's first), on the loop thread.

        Args:
            question: one of QUESTIONS
            done: receives the list.
        """
        own = self.snapshot(question)
        broker = self.broker
        if broker is None:
            done([own])
            return
        ask_id = uuid.uuid4().hex
        gathering = self._gathering[ask_id] = _Gathering(own, done)
        self.set_timeout(self.timeout, lambda: self._finish(ask_id))
        client = self.redis_client
        if client is not None and hasattr(broker, "run"):
            channel = broker.prefix + CONTROL_TOPIC

            async def numsub() -> int:
                reply = await client().pubsub_numsub(channel)
                return int(reply[0][1])

            def counted(result: Any) -> None:
                # Workers following the control topic, this one included.
                if isinstance(result, int) and self._gathering.get(ask_id) is gathering:
                    gathering.expected = max(result, 1)
                    if gathering.complete():
                        self._finish(ask_id)

            broker.run(numsub, counted)
        self.users.control({"op": "api.ask", "id": ask_id, "from": self.worker, "what": question})

    def _finish(self, ask_id: str) -> None:
        gathering = self._gathering.pop(ask_id, None)
        if gathering is not None:
            gathering.done(gathering.answers)

    def _asked(self, header: dict[str, Any], body: bytes) -> None:
        question = str(header["what"])
        if question in QUESTIONS:
            self.users.control({"op": "api.answer", "id": str(header["id"]), "to": str(header["from"])},
                               orjson.dumps(self.snapshot(question)))

    def _answered(self, header: dict[str, Any], body: bytes) -> None:
        if header.get("to") != self.worker:
            return
        ask_id = str(header["id"])
        gathering = self._gathering.get(ask_id)
        if gathering is None:
            return  # too late: answered without it
        gathering.answers.append(orjson.loads(body))
        if gathering.complete():
            self._finish(ask_id)
