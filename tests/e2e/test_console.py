"""The web console in a real browser: Debian's chromium driven by Playwright against a real
3-node cluster with auth on. Each page is saved as a screenshot under ci-artifacts/console/.

The browser talks to a follower, so every write from a form is forwarded to the leader
(the console's 303 travels back through the forward). Skipped where chromium or Playwright
is missing (.ci/run installs chromium where apt is usable).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

from naraft.client import (
    INSTANCE_LIST_PATH,
    INSTANCE_PATH,
    READINESS_PATH,
    bearer,
    list_members,
    login,
)
from naraft.configs import archive

CHROMIUM: Final = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"no {CHROMIUM}: the console's browser tests need Debian's chromium "
        "(apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the console's browser tests need playwright (pip, dev extra)"
)

pytestmark = [pytest.mark.e2e]

SHOTS: Final = Path(__file__).parents[2] / "ci-artifacts" / "console"
CHROMIUM_ARGS: Final = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip
SERVICE: Final = "console-orders"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("console") / "cluster"
    with local_cluster(root, size=3, extra_args=FAST_TIMERS, auth="on") as cluster:
        cluster.wait_ready()
        password = cluster.admin_password
        assert password is not None
        wait_for(lambda: _login_works(cluster, password), timeout_seconds=15, what="a login")
        yield cluster


def _login_works(cluster: LocalCluster, password: str) -> bool:
    try:
        login(cluster.nodes[0].url, password)
    except OSError:
        return False
    return True


def token(cluster: LocalCluster) -> str:
    assert cluster.admin_password is not None
    return login(cluster.leader().url, cluster.admin_password)


@pytest.fixture(scope="module")
def follower(cluster: LocalCluster) -> NodeProcess:
    leader = cluster.leader()
    return next(n for n in cluster.nodes if n.id != leader.id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()


class Console:
    """One signed-in tab, its uncaught page errors, and its screenshots."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # every confirm is answered yes
        page.set_default_timeout(10_000)

    def open(self, path: str) -> None:
        answer = self.page.goto(f"{self.base}{path}")
        assert answer is not None
        assert answer.status == 200, f"{path}: {answer.status} {self.page.inner_text('body')}"

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def flash(self) -> str:
        return str(self.page.locator("p.flash").first.inner_text())


@pytest.fixture(scope="module")
def console(cluster: LocalCluster, follower: NodeProcess, browser: Any) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = Console(context.new_page(), follower.url)
    tab.open("/nacos/")
    assert "/nacos/ui/login" in tab.page.url  # no session yet
    tab.shot("login")
    tab.page.get_by_label("User name").fill("nacos")
    tab.page.get_by_label("Password").fill(cluster.admin_password or "")
    tab.page.get_by_role("button", name="Sign in").click()
    tab.page.wait_for_url("**/nacos/ui/services**")
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(autouse=True)
def no_page_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "console" in request.fixturenames:
        tab: Console = request.getfixturevalue("console")
        assert tab.errors == [], "uncaught errors in the console's pages"


def register(cluster: LocalCluster, ip: str, **extra: str) -> None:
    params = {"serviceName": SERVICE, "ip": ip, "port": "8080", "ephemeral": "false", **extra}
    answer = cluster.client.post(
        f"{cluster.leader().url}{INSTANCE_PATH}", params=params, headers=bearer(token(cluster))
    )
    assert answer.status_code == 200, answer.text


def api_hosts(cluster: LocalCluster, node: NodeProcess) -> set[str]:
    answer = cluster.client.get(
        f"{node.url}{INSTANCE_LIST_PATH}",
        params={"serviceName": SERVICE},
        headers=bearer(token(cluster)),
    )
    assert answer.status_code == 200, answer.text
    return {h["ip"] for h in answer.json()["hosts"]}


@pytest.fixture(scope="module")
def orders(cluster: LocalCluster, follower: NodeProcess) -> str:
    """A service with two persistent instances, registered through the API. (The tests do
    not depend on their order: pytest-xdist may split this module's tests between workers,
    each with its own cluster.)"""
    register(cluster, "10.9.0.1", metadata='{"zone":"a"}')
    register(cluster, "10.9.0.2", weight="2")
    wait_for(
        lambda: api_hosts(cluster, follower) == {"10.9.0.1", "10.9.0.2"},
        timeout_seconds=10,
        what="replication",
    )
    return SERVICE


def test_find_a_service_registered_through_the_api(orders: str, console: Console) -> None:
    console.open("/nacos/ui/services")
    console.page.get_by_label("Service name contains").fill("console-ord")
    console.page.get_by_role("button", name="Search").click()
    row = console.page.locator("#services tbody tr", has_text=SERVICE)
    assert row.locator("td").nth(3).inner_text() == "2"  # instances
    assert row.locator("td").nth(4).inner_text() == "2"  # healthy
    console.shot("services")
    row.get_by_role("link", name=SERVICE).click()
    rows = console.page.locator("#instances tbody tr")
    assert rows.count() == 2
    assert "zone=a" in rows.filter(has_text="10.9.0.1").inner_text()
    console.shot("service")
    # a phone: the page fits its width (wide tables scroll inside their own box)
    console.page.set_viewport_size({"width": 390, "height": 844})
    try:
        width = console.page.evaluate("document.documentElement.scrollWidth")
        wide = console.page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 391)"
            ".slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
        )
        assert width <= 390, wide
        console.shot("service-phone")
    finally:
        console.page.set_viewport_size({"width": 1280, "height": 800})


def test_disabling_an_instance_changes_the_apis_list(
    cluster: LocalCluster, orders: str, console: Console
) -> None:
    console.open(f"/nacos/ui/service?serviceName={SERVICE}")
    row = console.page.locator("#instances tbody tr", has_text="10.9.0.2")
    row.get_by_role("button", name="Disable").click()
    assert "disabled 10.9.0.2:8080" in console.flash()
    assert "disabled" in console.page.locator("tr", has_text="10.9.0.2").inner_text()
    # a client's list leaves disabled instances out, on every node
    for node in cluster.running_nodes():
        wait_for(
            lambda node=node: api_hosts(cluster, node) == {"10.9.0.1"},
            timeout_seconds=10,
            what="disable",
        )


def test_bad_weight_shows_the_apis_error_and_writes_nothing(
    cluster: LocalCluster, orders: str, console: Console
) -> None:
    api = cluster.client.patch(
        f"{cluster.leader().url}{INSTANCE_PATH}",
        params={"serviceName": SERVICE, "ip": "10.9.0.1", "port": "8080", "weight": "heavy"},
        headers=bearer(token(cluster)),
    )
    assert api.status_code == 400
    console.open(f"/nacos/ui/service?serviceName={SERVICE}")
    console.page.get_by_label("Weight of 10.9.0.1:8080").fill("heavy")
    console.page.locator("tr", has_text="10.9.0.1").get_by_role(
        "button", name="Save weight"
    ).click()
    assert console.page.get_by_role("alert").inner_text() == api.text
    console.shot("service-error")
    detail = cluster.client.get(
        f"{cluster.leader().url}{INSTANCE_PATH}",
        params={"serviceName": SERVICE, "ip": "10.9.0.1", "port": "8080"},
        headers=bearer(token(cluster)),
    )
    assert detail.json()["weight"] == 1.0


def test_a_clusters_checker_port_and_metadata_are_set_on_the_service_page(
    cluster: LocalCluster, orders: str, console: Console
) -> None:
    page = console.page
    console.open(f"/nacos/ui/service?serviceName={SERVICE}")
    page.get_by_label("Check port of DEFAULT").fill("70000")
    page.get_by_role("button", name="Save DEFAULT").click()
    assert "checkPort" in page.get_by_role("alert").inner_text()  # the API's refusal
    page.get_by_label("Health checker of DEFAULT").select_option("HTTP")
    page.get_by_label("HTTP path of DEFAULT").fill("/ready")
    page.get_by_label("Check port of DEFAULT").fill("9090")
    page.get_by_label("Check DEFAULT on each instance's port").uncheck()
    page.get_by_label("Metadata of DEFAULT").fill('{"zone": "b"}')
    console.shot("service-cluster")
    page.get_by_role("button", name="Save DEFAULT").click()
    assert "updated cluster DEFAULT" in console.flash()
    detail = cluster.client.get(
        f"{cluster.leader().url}/nacos/v1/ns/catalog/service",
        params={"serviceName": SERVICE},
        headers=bearer(token(cluster)),
    ).json()
    (shown,) = detail["clusters"]
    assert shown["healthChecker"] == {
        "type": "HTTP",
        "path": "/ready",
        "headers": "",
        "expectedResponseCode": 200,
    }
    assert (shown["defaultCheckPort"], shown["useIPPort4Check"]) == (9090, False)
    assert shown["metadata"] == {"zone": "b"}


def config_content(cluster: LocalCluster, data_id: str) -> str:
    answer = cluster.client.get(
        f"{cluster.leader().url}/nacos/v1/cs/configs",
        params={"dataId": data_id, "group": "DEFAULT_GROUP"},
        headers=bearer(token(cluster)),
    )
    assert answer.status_code == 200, answer.text
    return answer.text


def test_publish_edit_diff_history_and_roll_back_a_config(
    cluster: LocalCluster, console: Console
) -> None:
    page = console.page
    console.open("/nacos/ui/configs")
    page.get_by_role("link", name="New config").click()
    page.get_by_label("Data ID").fill("console.properties")
    page.get_by_label("Content").fill("color=blue\nsize=10\n")
    page.get_by_role("button", name="Review changes").click()
    page.get_by_role("button", name="Publish").click()
    assert "published console.properties" in console.flash()
    assert config_content(cluster, "console.properties") == "color=blue\nsize=10\n"

    page.get_by_label("Content").fill("color=green\nsize=10\n")
    page.get_by_role("button", name="Review changes").click()
    diff = page.locator("#diff")
    assert diff.locator(".del").inner_text() == "-color=blue"
    assert diff.locator(".add").inner_text() == "+color=green"
    console.shot("config-review")
    page.get_by_role("button", name="Publish").click()
    assert config_content(cluster, "console.properties") == "color=green\nsize=10\n"
    console.shot("config")

    page.get_by_role("link", name="History").first.click()
    versions = page.locator("#history tbody tr")
    assert versions.count() == 2  # the insert and the update (holding the old content)
    console.shot("history")
    older = versions.nth(0).locator("td").first.inner_text()  # newest first: the update
    page.get_by_label("Compare version").select_option(older)
    page.get_by_role("button", name="Show diff").click()
    assert page.locator("#diff .del").inner_text() == "-color=blue"
    assert page.locator("#diff .add").inner_text() == "+color=green"
    page.go_back()
    page.get_by_role("button", name=f"Roll back to {older}").click()  # confirm: accepted
    assert f"back to version {older}" in console.flash()
    assert config_content(cluster, "console.properties") == "color=blue\nsize=10\n"


def publish_config(cluster: LocalCluster, data_id: str, content: str, kind: str) -> None:
    answer = cluster.client.post(
        f"{cluster.leader().url}/nacos/v1/cs/configs",
        params={"dataId": data_id, "group": "DEFAULT_GROUP", "content": content, "type": kind},
        headers=bearer(token(cluster)),
    )
    assert answer.status_code == 200, answer.text


def test_export_and_import_configs_as_a_zip(
    cluster: LocalCluster, console: Console, tmp_path: Path
) -> None:
    page = console.page
    publish_config(cluster, "zip-export.json", '{"a": 1}', "json")
    console.open("/nacos/ui/configs")
    page.get_by_label("Export", exact=True).select_option("all")
    with page.expect_download() as started:
        page.get_by_role("button", name="Export", exact=True).click()
    download = started.value
    assert download.suggested_filename.startswith("nacos_config_export_")
    saved = tmp_path / "export.zip"
    download.save_as(str(saved))
    limits = archive.ArchiveLimits.for_content(1 << 20)
    exported = {i.data_id: i for i in archive.read_archive(saved.read_bytes(), limits)}
    assert exported["zip-export.json"].content == '{"a": 1}'
    assert exported["zip-export.json"].type == "json"

    upload = tmp_path / "import.zip"
    item = archive.ExportItem(
        group="DEFAULT_GROUP", data_id="zip-import.yaml", content="b: 2\n", type="yaml"
    )
    upload.write_bytes(archive.write_archive([item], v2=True))
    page.get_by_label("Import a zip").set_input_files(str(upload))
    page.get_by_label("When a config exists").select_option("SKIP")
    page.get_by_role("button", name="Import", exact=True).click()
    assert "imported 1, skipped 0, failed 0" in console.flash()
    assert config_content(cluster, "zip-import.yaml") == "b: 2\n"
    console.shot("configs-imported")
    # the same zip again, policy ABORT: refused in words, nothing written
    page.get_by_label("Import a zip").set_input_files(str(upload))
    page.get_by_label("When a config exists").select_option("ABORT")
    page.get_by_role("button", name="Import", exact=True).click()
    assert "exist already (DEFAULT_GROUP/zip-import.yaml)" in page.get_by_role("alert").inner_text()


def test_clone_ticked_configs_under_new_names(cluster: LocalCluster, console: Console) -> None:
    page = console.page
    publish_config(cluster, "clone-source.yaml", "c: 3\n", "yaml")
    console.open("/nacos/ui/configs?dataId=clone-source")
    page.get_by_label("Tick DEFAULT_GROUP/clone-source.yaml").check()
    page.get_by_role("button", name="Clone the ticked configs").click()
    page.get_by_label("Copy's data ID for DEFAULT_GROUP/clone-source.yaml").fill("clone-copy.yaml")
    page.get_by_label("When a config exists").select_option("ABORT")
    console.shot("config-clone")
    page.get_by_role("button", name="Clone", exact=True).click()
    assert "cloned 1, skipped 0, failed 0" in console.flash()
    assert config_content(cluster, "clone-copy.yaml") == "c: 3\n"
    assert config_content(cluster, "clone-source.yaml") == "c: 3\n"


def test_content_is_coloured_by_type_and_never_runs(
    cluster: LocalCluster, console: Console
) -> None:
    page = console.page
    hostile = '<script>window.pwned = 1</script><b id="bold">bold</b>\n'
    publish_config(cluster, "hostile.html", hostile, "html")
    publish_config(cluster, "broken.json", '{"name": "x", "list": [1, true', "json")
    console.open("/nacos/ui/config?dataId=hostile.html&group=DEFAULT_GROUP")
    current = page.locator("#current")
    assert current.inner_text() == hostile  # shown as text, whole
    assert current.locator(".hl-tag").count() >= 4
    assert page.locator("#bold").count() == 0  # no element of the content's markup
    assert page.evaluate("window.pwned") is None  # and none of its script ran
    console.shot("config-html")
    console.open("/nacos/ui/config?dataId=broken.json&group=DEFAULT_GROUP")
    current = page.locator("#current")
    assert current.inner_text() == '{"name": "x", "list": [1, true'  # invalid: still shown
    assert current.locator(".hl-key").first.inner_text() == '"name"'
    assert current.locator(".hl-lit").inner_text() == "true"
    assert current.locator(".hl-key").first.evaluate("e => getComputedStyle(e).color") != (
        current.evaluate("e => getComputedStyle(e).color")
    )
    console.shot("config-json")


def test_create_a_namespace_and_a_bad_id_is_refused(
    cluster: LocalCluster, console: Console
) -> None:
    page = console.page
    console.open("/nacos/ui/namespaces")
    page.get_by_label("ID (blank: generated)").fill("team-console")
    page.get_by_label("Name", exact=True).fill("Team console")
    page.get_by_role("button", name="Create").click()
    assert "created namespace team-console" in console.flash()
    assert page.locator("#namespaces", has_text="team-console").count() == 1
    console.shot("namespaces")

    listed = cluster.client.get(
        f"{cluster.leader().url}/nacos/v1/console/namespaces", headers=bearer(token(cluster))
    ).json()["data"]
    page.get_by_label("ID (blank: generated)").fill("no spaces allowed")
    page.get_by_label("Name", exact=True).fill("x")
    page.get_by_role("button", name="Create").click()
    api = cluster.client.post(
        f"{cluster.leader().url}/nacos/v1/console/namespaces",
        params={"customNamespaceId": "no spaces allowed", "namespaceName": "x"},
        headers=bearer(token(cluster)),
    )
    assert api.status_code == 400
    assert page.get_by_role("alert").inner_text() == api.text
    after = cluster.client.get(
        f"{cluster.leader().url}/nacos/v1/console/namespaces", headers=bearer(token(cluster))
    ).json()["data"]
    assert after == listed


def test_create_a_user_and_give_it_a_role(cluster: LocalCluster, console: Console) -> None:
    page = console.page
    console.open("/nacos/ui/users")
    page.get_by_label("New user").fill("carol")
    page.get_by_label("Password").fill("carol-password")
    page.get_by_role("button", name="Create user").click()
    assert "create user ok!" in console.flash()
    page.get_by_label("Role", exact=True).first.fill("readers")
    page.get_by_label("for user").fill("carol")
    page.get_by_role("button", name="Bind role").click()
    assert page.locator("#roles tbody tr", has_text="carol").count() == 1
    console.shot("users")
    assert login(cluster.leader().url, "carol-password", username="carol")


def leader_shown(console: Console) -> str | None:
    rows = console.page.locator("#members tbody tr")
    for n in range(rows.count()):
        cells = rows.nth(n).locator("td")
        if cells.nth(1).inner_text() == "leader":
            return str(cells.first.inner_text()).split(" ")[0]
    return None


def members_api(cluster: LocalCluster) -> dict[str, str]:
    answer = list_members(cluster.leader().url, token=token(cluster))
    return {row["id"]: row["role"] for row in answer["members"]}


def test_add_and_remove_a_member_from_the_cluster_page(
    cluster: LocalCluster, console: Console
) -> None:
    """(Before the test that kills a leader: it needs every original member.)"""
    page = console.page
    new = cluster.add_joining_node()
    new.start()
    try:

        def waiting() -> str | None:
            answer = cluster.client.get(f"{new.url}{READINESS_PATH}", timeout=1.0)
            return answer.text if answer.status_code == 503 else None

        wait_for(waiting, timeout_seconds=15, what="the joining node to wait to be added")
        console.open("/nacos/ui/cluster")
        page.get_by_label("Add member (host:port)").fill(new.id)
        page.get_by_label("as", exact=True).select_option("voter")
        page.get_by_role("button", name="Add member").click()
        assert f"{new.id} is a voter" in console.flash(), page.inner_text("main")
        assert members_api(cluster)[new.id] == "voter"
        wait_for(
            lambda: page.locator("#members tbody tr").count() == 4,
            timeout_seconds=10,
            what="the page to list four members",
        )
        console.shot("cluster-four")
        # a refusal in words: it is a voter already
        page.get_by_label("Add member (host:port)").fill(new.id)
        page.get_by_role("button", name="Add member").click()
        assert page.get_by_role("alert").inner_text() == f"{new.id} is a voter already"

        page.get_by_label("Member", exact=True).select_option(new.id)
        page.get_by_role("button", name="Remove member").click()  # confirm: accepted
        assert f"{new.id} was removed" in console.flash()
        cluster.forget_member(new.id)
        assert new.id not in members_api(cluster)
        wait_for(  # (this node may apply the removal a moment after the leader answered)
            lambda: page.locator("#members tbody tr").count() == 3,
            timeout_seconds=10,
            what="the page to list three members",
        )
    finally:
        new.terminate(hand_over=False)


def test_cluster_page_shows_the_members_and_a_new_leader_live(
    cluster: LocalCluster, follower: NodeProcess, console: Console
) -> None:
    console.open("/nacos/ui/cluster")
    assert console.page.locator("#members tbody tr").count() == 3
    before = cluster.leader()
    assert leader_shown(console) == before.id
    # hand the leadership to the node this browser talks to, from its form (confirmed)
    console.page.get_by_label("To member").select_option(follower.id)
    console.page.get_by_role("button", name="Transfer leadership").click()
    assert f"leadership moved from {before.id} to {follower.id}" in console.flash()
    # then kill a leader that is not this browser's node
    target = next(n for n in cluster.nodes if n.id not in (follower.id,))
    console.page.get_by_label("To member").select_option(target.id)
    console.page.get_by_role("button", name="Transfer leadership").click()
    assert f"to {target.id}" in console.flash()
    leader = cluster.leader()
    assert leader.id == target.id
    wait_for(lambda: leader_shown(console) == leader.id, timeout_seconds=10, what="the page")
    console.shot("cluster")

    leader.kill()
    new_leader = cluster.leader(exclude=leader.id, among=cluster.running_nodes())
    # the page refreshes itself: no reload
    wait_for(lambda: leader_shown(console) == new_leader.id, timeout_seconds=20,
             what="the console to show the new leader")  # fmt: skip
    wait_for(
        lambda: "unreachable" in console.page.locator("tr", has_text=leader.id).inner_text(),
        timeout_seconds=10,
        what="the console to show the old leader unreachable",
    )
    console.shot("cluster-after-kill")
    assert os.path.exists(SHOTS / "cluster-after-kill.png")
