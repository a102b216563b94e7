"""Config export and import (the Nacos console's zip) through the v1 API in process: round
trips in both formats, the three policies, and zips refused with nothing written."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import pytest
from aiohttp import ClientResponse, FormData
from tests.api import test_configs
from tests.api.test_configs import CS, MAX_CONTENT, Env

from naraft.configs import archive
from naraft.configs.model import ConfigKey
from naraft.errors import UnavailableError

env = test_configs.env  # the in-process API over the real state machine


def zip_of(entries: Mapping[str, bytes | str], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as out:
        for name, body in entries.items():
            out.writestr(name, body.encode() if isinstance(body, str) else body)
    return buffer.getvalue()


async def upload(env: Env, body: bytes, *, field: str = "file", **params: str) -> ClientResponse:
    form = FormData()
    form.add_field(field, body, filename="export.zip", content_type="application/zip")
    return await env.client.post(CS, params={"import": "true", **params}, data=form)


async def result(response: ClientResponse) -> dict[str, object]:
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert isinstance(answer, dict)
    return answer


async def export(env: Env, flag: str = "exportV2", **params: str) -> dict[str, bytes]:
    response = await env.call("GET", CS, {flag: "true", **params})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Disposition"].startswith(
        "attachment;filename=nacos_config_export_"
    )
    with zipfile.ZipFile(io.BytesIO(await response.read())) as got:
        return {name: got.read(name) for name in got.namelist()}


def snapshot(env: Env) -> dict[str, bytes]:
    return dict(env.datums.items())


async def seed(env: Env) -> None:
    for data_id, content, extra in (
        ("app.yaml", "a: 1\n名: 值\n", {"type": "yaml", "appName": "shop", "desc": 'the "app"'}),
        ("db.properties", "url=jdbc:x", {"type": "properties"}),
    ):
        assert (await env.publish(data_id, content, **extra)).status == 200
    other = {"dataId": "other", "group": "G2", "content": "o", "tenant": "ns1"}
    assert (await env.call("POST", CS, data=other)).status == 200


@pytest.mark.parametrize("flag", ["export", "exportV2"])
async def test_export_then_import_round_trips(env: Env, flag: str) -> None:
    await seed(env)
    entries = await export(env, flag)
    meta = archive.META_V2 if flag == "exportV2" else archive.META_V1
    assert set(entries) == {"DEFAULT_GROUP/app.yaml", "DEFAULT_GROUP/db.properties", meta}
    assert entries["DEFAULT_GROUP/app.yaml"].decode() == "a: 1\n名: 值\n"
    if flag == "export":
        assert entries[meta] == b"DEFAULT_GROUP.app~yaml.app=shop\r\n"
    answer = await result(await upload(env, zip_of(entries), namespace="ns2"))
    assert answer["code"] == 200
    assert answer["data"] == {"succCount": 2, "skipCount": 0}
    copy = env.state.get(ConfigKey("ns2", "DEFAULT_GROUP", "app.yaml"))
    assert copy is not None
    assert copy.content == "a: 1\n名: 值\n"
    assert copy.app_name == "shop"
    assert copy.type == "yaml"  # format 2 carries it; format 1: from the extension, as Nacos
    if flag == "exportV2":  # format 2 carries desc too
        assert copy.desc == 'the "app"'
    assert env.state.get(ConfigKey("ns2", "G2", "other")) is None  # ns1's stays in ns1


async def test_export_filters(env: Env) -> None:
    await seed(env)
    assert set(await export(env, group="G2", tenant="ns1")) == {"G2/other", archive.META_V2}
    assert set(await export(env, dataId="app*")) == {"DEFAULT_GROUP/app.yaml", archive.META_V2}
    assert set(await export(env, appName="shop")) == {"DEFAULT_GROUP/app.yaml", archive.META_V2}
    record = env.state.get(ConfigKey("", "DEFAULT_GROUP", "db.properties"))
    assert record is not None
    assert set(await export(env, ids=str(record.id))) == {
        "DEFAULT_GROUP/db.properties",
        archive.META_V2,
    }
    # ids never reach outside the namespace asked for (the one a permission was checked on)
    other = env.state.get(ConfigKey("ns1", "G2", "other"))
    assert other is not None
    assert set(await export(env, ids=str(other.id))) == {archive.META_V2}


async def test_policies(env: Env) -> None:
    await seed(env)
    entries = {"DEFAULT_GROUP/app.yaml": "new", "DEFAULT_GROUP/fresh": "f"}
    before = snapshot(env)
    aborted = await result(await upload(env, zip_of(entries)))  # ABORT is the default
    assert aborted["data"] == {
        "succCount": 0,
        "skipCount": 1,
        "failData": [{"dataId": "app.yaml", "group": "DEFAULT_GROUP"}],
        "skipData": [{"dataId": "fresh", "group": "DEFAULT_GROUP"}],
    }
    assert snapshot(env) == before  # a conflict writes nothing
    skipped = await result(await upload(env, zip_of(entries), policy="SKIP"))
    assert skipped["data"] == {
        "succCount": 1,
        "skipCount": 1,
        "skipData": [{"dataId": "app.yaml", "group": "DEFAULT_GROUP"}],
    }
    app = env.state.get(ConfigKey("", "DEFAULT_GROUP", "app.yaml"))
    assert app is not None
    assert app.content == "a: 1\n名: 值\n"
    overwritten = await result(await upload(env, zip_of(entries), policy="overwrite"))
    assert overwritten["data"] == {"succCount": 2, "skipCount": 0}
    app = env.state.get(ConfigKey("", "DEFAULT_GROUP", "app.yaml"))
    assert app is not None
    assert app.content == "new"
    bad = await upload(env, zip_of(entries), policy="MERGE")
    assert bad.status == 400
    assert "policy" in await bad.text()


def bomb() -> bytes:
    return zip_of({"DEFAULT_GROUP/bomb": b"\0" * (MAX_CONTENT - 1)})


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        pytest.param(b"not a zip at all", 100004, "not a readable zip", id="not-a-zip"),
        pytest.param(zip_of({}), 100005, "no config", id="empty"),
        pytest.param(
            zip_of({"DEFAULT_GROUP/big": "x" * (MAX_CONTENT + 1)}),
            100004,
            "config-max-content-bytes",
            id="entry-too-big",
        ),
        pytest.param(zip_of({"../etc/passwd": "x"}), 100004, "group/dataId", id="dot-dot"),
        pytest.param(zip_of({"a/b/c": "x"}), 100004, "group/dataId", id="three-parts"),
        pytest.param(zip_of({"noslash": "x"}), 100004, "group/dataId", id="no-group"),
        pytest.param(zip_of({"G/bad id!": "x"}), 100003, "bad id!", id="invalid-dataId"),
        pytest.param(zip_of({"G/blank": " "}), 100003, "G/blank", id="blank-content"),
        pytest.param(zip_of({"G/bin": b"\xff\xfe"}), 100004, "UTF-8", id="not-utf8"),
        pytest.param(
            zip_of({"G/a": "x", archive.META_V1: "G.a.app=x=y"}),
            100002,
            "line 1",
            id="bad-meta-v1",
        ),
        pytest.param(
            zip_of({"G/a": "x", archive.META_V2: "metadata:\n- dataId: a\n  group: G\n"}),
            100002,
            "type",
            id="meta-v2-missing-type",
        ),
        pytest.param(
            zip_of({"G/a": "x", archive.META_V2: "metadata:\n- &x dataId: a\n"}),
            100002,
            "unknown key",
            id="meta-v2-anchor",
        ),
        pytest.param(
            zip_of({"G/a": "x", archive.META_V2: "metadata:\n- {dataId: a}\n"}),
            100002,
            "line 2",
            id="meta-v2-flow",
        ),
        pytest.param(
            zip_of(
                {
                    "G/a": "x",
                    "G/b": "y",
                    archive.META_V2: "metadata:\n- dataId: a\n  group: G\n  type: text\n",
                }
            ),
            100002,
            "does not list G/b",
            id="meta-v2-unlisted-entry",
        ),
        pytest.param(
            zip_of({archive.META_V2: "metadata:\n- dataId: a\n  group: G\n  type: text\n"}),
            100002,
            "does not hold",
            id="meta-v2-missing-entry",
        ),
        pytest.param(bomb(), 100004, "zip bomb", id="bomb-ratio"),
    ],
)
async def test_a_bad_zip_is_refused_naming_the_problem_and_writes_nothing(
    env: Env, body: bytes, code: int, names: str
) -> None:
    await seed(env)
    before = snapshot(env)
    answer = await result(await upload(env, body, policy="OVERWRITE"))
    assert answer["code"] == code, answer
    assert names in str(answer["message"]), answer
    assert answer["data"] == {"succCount": 0}
    assert snapshot(env) == before


async def test_a_declared_size_that_lies_is_caught_while_inflating(env: Env) -> None:
    """A zip whose header says 1 byte but whose data inflates to more than the limit."""
    real = zip_of({"G/liar": "y" * (MAX_CONTENT * 2)})
    name = b"G/liar"
    central = real.rindex(b"PK\x01\x02")
    # uncompressed size: offset 24 in the central header, 22 in the local one
    patched = bytearray(real)
    patched[central + 24 : central + 28] = (1).to_bytes(4, "little")
    patched[22:26] = (1).to_bytes(4, "little")
    assert name in patched
    before = snapshot(env)
    answer = await result(await upload(env, bytes(patched)))
    assert answer["code"] == 100004, answer
    assert snapshot(env) == before


async def test_a_zip_over_the_body_limit_is_refused_before_it_is_read(env: Env) -> None:
    """Entry counts and totals are the archive's (tests/configs/test_archive.py); a zip
    larger than the config routes' body limit never reaches it."""
    body = zip_of({f"G/d{i}": "x" for i in range(archive.MAX_ENTRIES + 2)})
    answer = await upload(env, body)
    assert answer.status == 413
    assert env.state.count() == 0


async def test_no_file_part_is_data_empty(env: Env) -> None:
    answer = await result(await upload(env, zip_of({"G/a": "x"}), field="other"))
    assert answer["code"] == 100005
    plain = await env.call("POST", CS, {"import": "true"})
    assert (await result(plain))["code"] == 100005
    assert env.state.count() == 0


async def clone(env: Env, body: object, **params: str) -> ClientResponse:
    return await env.client.post(CS, params={"clone": "true", **params}, json=body)


def config_id(env: Env, tenant: str, group: str, data_id: str) -> int:
    record = env.state.get(ConfigKey(tenant, group, data_id))
    assert record is not None
    return record.id


async def test_clone_copies_by_id_under_new_names_across_namespaces(env: Env) -> None:
    await seed(env)
    app = config_id(env, "", "DEFAULT_GROUP", "app.yaml")
    other = config_id(env, "ns1", "G2", "other")
    body = [
        {"cfgId": app, "dataId": "app-copy.yaml", "group": "COPIES"},
        {"cfgId": str(other), "dataId": "  ", "group": None},  # blank and null: its own
        {"cfgId": app, "dataId": "ignored"},  # a repeated id: the first one counts
        None,
    ]
    answer = await result(await clone(env, body, tenant="ns2"))
    assert answer["code"] == 200
    assert answer["message"] == "Clone Completed Successfully"
    assert answer["data"] == {"succCount": 2, "skipCount": 0}
    copy = env.state.get(ConfigKey("ns2", "COPIES", "app-copy.yaml"))
    assert copy is not None
    assert (copy.content, copy.type, copy.app_name) == ("a: 1\n名: 值\n", "yaml", "shop")
    assert copy.desc == ""  # as Nacos, a clone carries no description
    moved = env.state.get(ConfigKey("ns2", "G2", "other"))
    assert moved is not None
    assert moved.content == "o"
    assert env.state.get(ConfigKey("ns2", "DEFAULT_GROUP", "ignored")) is None
    assert env.state.count() == 5


async def test_clone_policies_and_unknown_ids(env: Env) -> None:
    await seed(env)
    app = config_id(env, "", "DEFAULT_GROUP", "app.yaml")
    db = config_id(env, "", "DEFAULT_GROUP", "db.properties")
    assert (await result(await clone(env, [{"cfgId": db}], tenant="ns2")))["code"] == 200
    both = [{"cfgId": app}, {"cfgId": db}, {"cfgId": 999_999}]  # no config has the last id
    before = snapshot(env)
    aborted = await result(await clone(env, both, tenant="ns2"))  # ABORT is the default
    assert aborted["data"] == {
        "succCount": 0,
        "skipCount": 1,
        "failData": [{"dataId": "db.properties", "group": "DEFAULT_GROUP"}],
        "skipData": [{"dataId": "app.yaml", "group": "DEFAULT_GROUP"}],
    }
    assert snapshot(env) == before
    skipped = await result(await clone(env, both, tenant="ns2", policy="skip"))
    assert skipped["data"]["succCount"] == 1
    assert env.state.get(ConfigKey("ns2", "DEFAULT_GROUP", "app.yaml")) is not None
    missing = await result(await clone(env, [{"cfgId": 999_999}], tenant="ns2"))
    assert (missing["code"], missing["data"]) == (100005, {"succCount": 0})
    nothing = await result(await clone(env, [None], tenant="ns2"))
    assert (nothing["code"], nothing["data"]) == (100006, {"succCount": 0})


async def test_a_clone_name_a_publish_refuses_writes_nothing(env: Env) -> None:
    await seed(env)
    app = config_id(env, "", "DEFAULT_GROUP", "app.yaml")
    db = config_id(env, "", "DEFAULT_GROUP", "db.properties")
    before = snapshot(env)
    body = [{"cfgId": db, "dataId": "fine"}, {"cfgId": app, "dataId": "bad name!"}]
    answer = await result(await clone(env, body, tenant="ns2"))
    assert answer["code"] == 100003
    assert "DEFAULT_GROUP/bad name! to clone" in str(answer["message"])
    assert snapshot(env) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b'{"cfgId": 1}', "body"),
        (b"[1]", "body"),
        (b'[{"dataId": "x"}]', "cfgId"),
        (b'[{"cfgId": -1}]', "cfgId"),
        (b'[{"cfgId": true}]', "cfgId"),
        (b'[{"cfgId": "1x"}]', "cfgId"),
        (b'[{"cfgId": 1, "dataId": 5}]', "dataId"),
        (b'[{"cfgId": 1, "group": ["G"]}]', "group"),
        pytest.param(
            b"[" + b",".join(b'{"cfgId": %d}' % i for i in range(1001)) + b"]",
            "body",
            id="over-1000",
        ),
    ],
)
async def test_a_bad_clone_body_is_a_400_naming_the_field(
    env: Env, body: bytes, field: str
) -> None:
    await seed(env)
    before = snapshot(env)
    answer = await env.client.post(
        CS,
        params={"clone": "true", "tenant": "ns2"},
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 400, await answer.text()
    assert field in await answer.text()
    assert snapshot(env) == before


async def test_a_write_failing_mid_import_says_how_many_were_written(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation and conflicts are settled before the first write; a proposal that fails
    after others succeeded (here the 35th of 40, in the second batch) is a 503 naming how
    many were written, never forwarded or retried whole."""
    real = env.proposer.propose
    calls = 0

    async def flaky(command: bytes) -> object:
        nonlocal calls
        calls += 1
        if calls == 35:
            raise UnavailableError("the leader stepped down")
        return await real(command)

    monkeypatch.setattr(env.proposer, "propose", flaky)
    body = zip_of({f"G/d{i}": f"{i}" for i in range(40)})
    answer = await upload(env, body, policy="OVERWRITE")
    assert answer.status == 503
    assert "stopped after writing 39 configs" in await answer.text()
    assert env.state.count() == 39
