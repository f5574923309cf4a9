"""Every error code of the protocol, provoked over a real socket; the connection survives where it can."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import msgpack
import pytest
from itsdangerous import URLSafeSerializer
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import ServerProcess, running_server
from .helpers import Client

SECRET = "test-secret-key"


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1},
        "server": {"max_connections": 4, "allowed_origins": ["http://good.example"]},
        "limits": {"max_text_chars": 50, "max_message_bytes": 2048, "max_messages_per_s": 20},
        "security": {"secret_key": SECRET},
    }
    with running_server(tmp_path_factory.mktemp("strict"), config) as server:
        yield server


async def expect_error(client: Client, code: str, fatal: bool = False) -> dict:
    message = await client.recv()
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert message["fatal"] is fatal
    assert message["message"]
    return message


async def still_alive(client: Client) -> None:
    await client.send({"type": "ping", "id": "alive"})
    assert (await client.expect("pong"))["id"] == "alive"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "invalid_message"),
        ("[1, 2, 3]", "invalid_message"),
        (b"\xc1\xc1", "invalid_message"),
        (b"\x81\xa4type\xa4\xff\xfe\xfd\xfc", "invalid_message"),  # msgpack string with invalid UTF-8
        ('{"type": "sing"}', "unknown_type"),
        ('{"type": "text", "text": 42}', "invalid_field"),
        ('{"type": "config", "config": {"speed": 100}}', "invalid_field"),
        ('{"type": "text", "text": "' + "x" * 51 + '"}', "text_too_long"),
        ('{"type": "text", "text": "' + "y" * 3000 + '"}', "message_too_large"),
    ],
)
async def test_bad_message_gets_a_non_fatal_error_and_the_connection_goes_on(
    strict_server: ServerProcess, frame: str | bytes, code: str
) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.start()
        await client.ws.send(frame)
        await expect_error(client, code)
        await still_alive(client)


async def test_error_echoes_the_message_id(strict_server: ServerProcess) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.start()
        await client.send({"type": "text", "text": "z" * 60, "id": "long-one"})
        error = await expect_error(client, "text_too_long")
        assert error["id"] == "long-one"


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"voice": "xx-nowhere"}, "unknown_voice"),
        ({"engine": "no-such-engine"}, "unknown_engine"),
        ({"format": "wma"}, "unsupported_format"),
        # An empty string is a value, not "unset": refused as the name it is.
        ({"format": ""}, "unsupported_format"),
        ({"engine": ""}, "unknown_engine"),
        ({"language": ""}, "unknown_voice"),
        ({"voice": ""}, "unknown_voice"),
    ],
)
async def test_bad_session_settings_are_refused_at_start_and_in_config(
    strict_server: ServerProcess, config: dict, code: str
) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.send({"type": "start", "config": config})
        await expect_error(client, code)
        ready = await client.start()  # the connection is still usable: start with defaults
        await client.send({"type": "config", "config": config})
        await expect_error(client, code)
        turn = await client.say("Still speaking.")
        assert turn.audio and turn.done["generation"] == ready["generation"]


async def test_msgpack_errors_are_answered_in_msgpack(strict_server: ServerProcess) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.ws.send(msgpack.packb({"type": "nope"}))
        raw = await asyncio.wait_for(client.ws.recv(), 5)
        assert isinstance(raw, bytes)
        assert msgpack.unpackb(raw)["code"] == "unknown_type"


async def test_unsupported_protocol_is_fatal_with_policy_close(strict_server: ServerProcess) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.send({"type": "start", "protocol": 99})
        await expect_error(client, "unsupported_protocol", fatal=True)
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1008


async def test_rate_limit_answers_then_recovers(strict_server: ServerProcess) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        await client.start()
        for n in range(60):
            await client.send({"type": "ping", "id": n})
        codes = []
        for _ in range(60):
            message = await client.recv()
            codes.append(message.get("code", message["type"]))
        assert "rate_limited" in codes and "pong" in codes
        await asyncio.sleep(1.2)
        await still_alive(client)


async def test_resume_with_a_bad_token_or_unknown_session(strict_server: ServerProcess) -> None:
    async with await Client.connect(strict_server.ws_url) as client:
        ready = await client.start()
        await client.say("Hello.")
    async with await Client.connect(strict_server.ws_url) as client:
        await client.send(
            {"type": "start", "session_id": ready["session_id"], "resume_token": "forged.token"}
        )
        await expect_error(client, "invalid_token")
        other = URLSafeSerializer(SECRET, salt="streamer.resume").dumps("0" * 32)
        await client.send({"type": "start", "session_id": ready["session_id"], "resume_token": other})
        await expect_error(client, "invalid_token")  # a valid token of another session
        await client.send({"type": "start", "session_id": "0" * 32, "resume_token": other})
        await expect_error(client, "session_not_found")
        await client.send(
            {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
        )
        assert (await client.expect("ready"))["session_id"] == ready["session_id"]


async def test_resuming_elsewhere_closes_the_old_connection_with_session_closed(
    strict_server: ServerProcess,
) -> None:
    async with await Client.connect(strict_server.ws_url) as first:
        ready = await first.start()
        async with await Client.connect(strict_server.ws_url) as second:
            await second.send(
                {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
            )
            await second.expect("ready")
            # Whatever the old connection still sends is ignored: it cannot interrupt the new owner.
            with contextlib.suppress(ConnectionClosed):  # the server may have closed it already
                await first.send({"type": "interrupt"})
                await first.send({"type": "text", "text": "Stale text from the old socket.", "flush": True})
            await expect_error(first, "session_closed", fatal=True)
            with pytest.raises(ConnectionClosed):
                await first.recv()
            turn = await second.say("The new connection owns the session.")
            assert turn.audio and not turn.of_type("interrupted")
            assert [e["text"] for e in turn.of_type("chunk_start")] == [
                "The new connection owns the session."
            ]


async def test_max_connections_refuses_with_overloaded_and_1013(strict_server: ServerProcess) -> None:
    clients = [await Client.connect(strict_server.ws_url) for _ in range(4)]
    try:
        for client in clients:
            await client.start()
        extra = await Client.connect(strict_server.ws_url)
        await expect_error(extra, "overloaded", fatal=True)
        with pytest.raises(ConnectionClosed):
            await extra.recv()
        assert extra.ws.close_code == 1013
    finally:
        for client in clients:
            await client.close()
    await asyncio.sleep(0.2)
    async with await Client.connect(strict_server.ws_url) as client:  # room again
        await client.start()


async def test_origin_outside_allowed_origins_is_refused(strict_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        await Client.connect(strict_server.ws_url, origin="http://evil.example")
    assert info.value.response.status_code == 403
    async with await Client.connect(strict_server.ws_url, origin="http://good.example") as client:
        await client.start()
