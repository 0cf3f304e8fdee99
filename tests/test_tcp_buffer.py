"""ByteBuffer (trionet/tcp/buffer.py) against a plain bytearray model."""

from hypothesis import given, settings, strategies as st

from trionet.tcp.buffer import ByteBuffer

_op = st.one_of(
    st.tuples(st.just("append"), st.binary(max_size=300),
              st.sampled_from([bytes, bytearray, memoryview])),
    st.tuples(st.just("consume"), st.integers(0, 400)),
    st.tuples(st.just("take"), st.integers(0, 400)),
    st.tuples(st.just("peek"), st.integers(0, 500), st.integers(0, 500)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=300)
@given(st.lists(_op, max_size=200))
def test_buffer_matches_bytearray_model(ops):
    buf = ByteBuffer()
    model = bytearray()
    for op in ops:
        if op[0] == "append":
            buf.append(op[2](op[1]))
            model += op[1]
        elif op[0] == "consume":
            buf.consume(op[1])
            del model[:op[1]]
        elif op[0] == "take":
            got = buf.take(op[1])
            assert type(got) is bytes
            assert got == model[:op[1]]
            del model[:op[1]]
        elif op[0] == "peek":
            got = buf.peek(op[1], op[2])
            assert type(got) is bytes
            assert got == model[op[1]:op[1] + op[2]]
        else:
            buf.clear()
            model.clear()
        assert len(buf) == len(model)
        assert bool(buf) == bool(model)


def test_appended_mutable_data_is_copied():
    data = bytearray(b"abcdef")
    buf = ByteBuffer()
    buf.append(data)
    buf.append(memoryview(data)[2:4])
    data[:] = b"zzzzzz"
    assert buf.take(100) == b"abcdefcd"


def test_consumed_chunks_are_released():
    buf = ByteBuffer()
    for _ in range(1000):
        buf.append(b"x" * 100)
    buf.consume(100 * 999 + 50)
    assert len(buf) == 50
    assert sum(c is not None for c in buf._chunks) == 1
    assert len(buf._chunks) < 1000  # the consumed slots were trimmed
    assert buf.peek(0, 100) == b"x" * 50
