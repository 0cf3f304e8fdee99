"""The trionet echo example: one stack on the loopback link, a TCP echo
server task and a client task, all in one trio.run.

    python examples/echo.py
"""

import trio

import trionet

PORT = 7
MESSAGE = b"Hello trionet"


async def echo_handler(stream: trionet.Stream) -> None:
    async with stream:
        async for data in stream:  # until the client's FIN
            await stream.send_all(data)


async def receive_exactly(stream: trionet.Stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError("the server closed early")
        data += chunk
    return data


async def main() -> None:
    async with trionet.Stack() as stack:
        stack.add_interface(trionet.LoopbackLink(), "127.0.0.1/8")
        async with trio.open_nursery() as nursery:
            await nursery.start(stack.serve_tcp, echo_handler, PORT)
            async with await stack.open_tcp_stream("127.0.0.1", PORT) as stream:
                for i in range(1, 4):
                    await stream.send_all(MESSAGE)
                    reply = await receive_exactly(stream, len(MESSAGE))
                    print(f"echo {i}: {reply.decode()}")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
