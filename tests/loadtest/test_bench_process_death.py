"""The process-death benchmark: how it tells an answer from a reset and from silence, and its table."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

from loadtest.bench_process_death import Outcome, _one, table


async def _classify(behaviour: str) -> int | str:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "answer":
            body = json.dumps({"pid": 4242}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif behaviour == "reset":  # SO_LINGER 0: close with RST, as the kernel does for a dead queue
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:  # silent: keep the connection, answer nothing
            await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await _one(port, timeout_s=0.5)


def test_an_answer_names_its_process_and_a_reset_or_silence_is_counted_as_such() -> None:
    assert asyncio.run(_classify("answer")) == 4242
    assert asyncio.run(_classify("reset")) == "reset"
    assert asyncio.run(_classify("silent")) == "no answer"


def test_the_table_gives_medians_and_every_try() -> None:
    outcomes = [Outcome(31, 33, 0), Outcome(30, 34, 0), Outcome(64, 0, 0)]
    text = table({"0": outcomes}, 64)
    assert "| 0 | 31 of 64 | 33 | 0 | 31/33/0, 30/34/0, 64/0/0 |" in text
