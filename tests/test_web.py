"""The reviewer page (`dso serve`) against a real network on the embedded EVM and a shared block store.

Two layers: HTTP-level tests of the security rules (token, CSRF, origin, headers, refusals), and end-to-end
tests in headless Chromium (Playwright driving Debian's chromium package): a reviewer approves a batch and
finds it in the global library, a tampered batch shows its failed check and cannot be approved, and a
malicious text renders as inert text. With DSO_SCREENSHOTS=DIR the browser tests save the README's
screenshots there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from starlette.testclient import TestClient

from dso.chain.client import RegistryClient, deploy_registry, dev_fund, embedded_web3
from dso.chain.registry import BatchState
from dso.config import ChainConfig, DSOConfig
from dso.embed import Embedder
from dso.keys import new_keystore
from dso.library import ExperienceLibrary
from dso.network import close_epoch
from dso.node import share
from dso.node.node import Node
from dso.node.state import NodeState
from dso.store import LocalBlockStore
from dso.web import Reviewer, create_app

pytestmark = pytest.mark.slow  # a registry on the embedded EVM, and a browser

PASSWORD = "correct horse"
TOKEN = "test-token-0123456789"
HONEST = [
    "When a question counts legs, multiply each animal's count by its legs before adding.",
    "When two units differ, convert both to the smaller unit before comparing.",
]
TAMPERED = ["When the answer must be a word, answer with one kinship word only."]
MALICIOUS = (
    'When checking answers <script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
    ' read <a href="javascript:window.__pwned = 3">this guide</a> first.'
)
CHROMIUM = "/usr/bin/chromium"


@dataclasses.dataclass
class Network:
    registry: str
    store: LocalBlockStore
    tmp: Path
    embedder: Embedder
    keystore: Path
    reviewer_address: str
    accounts: dict[str, LocalAccount]

    def writer(self, name: str) -> Node:
        account = self.accounts[name]
        library = ExperienceLibrary(self.tmp / name / "library.db", self.embedder)
        state = NodeState(self.tmp / name / "node.db")
        return Node(
            DSOConfig(), library, account, RegistryClient(embedded_web3(), self.registry, account), self.store, state
        )

    def reviewer(self) -> Reviewer:
        config = DSOConfig()
        config.chain = dataclasses.replace(ChainConfig(), keystore=self.keystore)
        config.network = dataclasses.replace(config.network, node_dir=self.tmp / "reviewer")
        library = ExperienceLibrary(self.tmp / "reviewer" / "library.db", self.embedder)
        state = NodeState(self.tmp / "reviewer" / "node.db")
        registry = RegistryClient(embedded_web3(), self.registry)  # no key: the page unlocks it per vote
        return Reviewer(Node(config, library, self.reviewer_address, registry, self.store, state))


def make_network(tmp_path: Path, embedder: Embedder) -> Network:
    """Members: the reviewer, A and C (a batch is accepted at 2 of 3 yes). Publishers: honest P, tampering T,
    malicious M, each with one pending batch; A has voted on all three (yes on P's, no on the others)."""
    w3 = embedded_web3()
    keystore = tmp_path / "reviewer-key.json"
    reviewer_address = new_keystore(keystore, PASSWORD, kdf="pbkdf2", iterations=2)
    accounts = {name: Account.create() for name in ("A", "C", "P", "T", "M")}
    for address in [reviewer_address, *(a.address for a in accounts.values())]:
        dev_fund(w3, address)
    members = [reviewer_address, accounts["A"].address, accounts["C"].address]
    client = deploy_registry(w3, accounts["A"], members, voting_window=10_000)
    client.sponsor_many([accounts[name].address for name in ("P", "T", "M")])  # so A's automatic votes judge them
    net = Network(
        client.address, LocalBlockStore(tmp_path / "blocks"), tmp_path, embedder, keystore, reviewer_address, accounts
    )
    for name, texts in (("P", HONEST), ("T", TAMPERED), ("M", [MALICIOUS])):
        node = net.writer(name)
        for text in texts:
            node.library.add(text, domain="leg_counting" if name == "P" else "general")
        node.publish()
        if name == "T":  # the store now serves other bytes under the record's name
            info = node.registry.batch(bytes.fromhex(node.state.own_batches()[0][2:]))
            manifest = share.check_manifest(info, net.store.get(info.batch_cid))
            victim = net.store.root / manifest.records[0][-2:] / manifest.records[0]
            victim.write_bytes(victim.read_bytes().replace(b"kinship", b"KINSHIP"))
    member_a = net.writer("A")
    member_a.sync()
    return net


def batch_of(net: Network, name: str) -> str:
    node = net.writer(name)
    try:
        return node.state.own_batches()[0]
    finally:
        node.close()


def close_epoch_of(net: Network) -> None:
    """Time passes on the embedded chain: the epoch's last block and every pending deadline are mined."""
    w3 = embedded_web3()
    close_epoch(w3, RegistryClient(w3, net.registry))


def state_of(net: Network, batch_id: str) -> BatchState:
    return RegistryClient(embedded_web3(), net.registry).batch(bytes.fromhex(batch_id[2:])).state


@pytest.fixture
def network(tmp_path: Path, embedder: Embedder) -> Network:
    return make_network(tmp_path, embedder)


# -- HTTP level ----------------------------------------------------------------------------------


def signed_in(client: TestClient) -> str:
    response = client.get(f"/login?token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    page = client.get("/").text
    return page.split('name="csrf" value="')[1].split('"')[0]


def test_every_page_is_escaped_and_carries_a_strict_policy(network: Network) -> None:
    app = create_app(network.reviewer(), TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/", "/library", "/status", "/login"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src" not in csp  # no script source at all
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "<script" not in response.text.lower()
        pending = client.get("/").text
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in pending  # the text is shown, as text
        assert 'onerror="' not in pending and 'href="javascript:' not in pending
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding


def test_writes_need_the_token_the_csrf_field_and_the_same_origin(network: Network) -> None:
    reviewer = network.reviewer()
    app = create_app(reviewer, TOKEN)
    honest = batch_of(network, "P")
    vote = {"batch": honest, "decision": "approve", "password": PASSWORD}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.post("/vote", data=vote).status_code == 403  # not signed in
        assert client.get("/login?token=wrong").status_code == 403
        csrf = signed_in(client)
        assert client.post("/vote", data=vote).status_code == 403  # no CSRF field
        assert client.post("/vote", data={**vote, "csrf": "0" * 64}).status_code == 403
        cross = client.post("/vote", data={**vote, "csrf": csrf}, headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
        wrong = client.post("/vote", data={**vote, "csrf": csrf, "password": "wrong"})
        assert wrong.status_code == 400 and "error:" in wrong.text
        assert state_of(network, honest) == BatchState.PENDING  # nothing was cast
        big = client.post("/vote", content=b"x" * 100_000, headers={"content-type": "text/plain"})
        assert big.status_code == 413
        done = client.post("/vote", data={**vote, "csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303, done.text[:500]
    assert state_of(network, honest) == BatchState.ACCEPTED  # A's yes and the reviewer's: 2 of 3


def test_a_batch_that_fails_a_check_cannot_be_approved_even_by_a_crafted_form(network: Network) -> None:
    app = create_app(network.reviewer(), TOKEN)
    tampered, honest = batch_of(network, "T"), batch_of(network, "P")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        csrf = signed_in(client)
        page = client.get("/").text
        article = page.split(f'id="batch-{tampered}"')[1].split("</article>")[0]
        assert 'data-check="records"' in article and "do not match the CID" in article  # the failed check and why
        assert "cannot be approved" in article
        form = {"batch": [honest, tampered], "decision": "approve", "password": PASSWORD, "csrf": csrf}
        refused = client.post("/vote", data=form)
        assert refused.status_code == 400 and "failed its records check" in refused.text
        assert state_of(network, honest) == BatchState.PENDING  # all or nothing: the honest one was not cast
        assert state_of(network, tampered) == BatchState.PENDING
        rejected = client.post("/vote", data={**form, "batch": tampered, "decision": "reject"}, follow_redirects=False)
        assert rejected.status_code == 303
        bad = client.post("/vote", data={**form, "batch": "0x1234"})
        assert bad.status_code == 400 and "64 hex digits" in bad.text
    reviewer_votes = RegistryClient(embedded_web3(), network.registry).has_voted(
        bytes.fromhex(tampered[2:]), network.reviewer_address
    )
    assert reviewer_votes


def test_a_node_that_is_not_a_member_reviews_but_offers_no_vote(network: Network) -> None:
    app = create_app(Reviewer(network.writer("P")), TOKEN)  # P publishes but is not a registry member
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.get(f"/login?token={TOKEN}")
        page = client.get("/").text
        assert "not a registry member" in page and 'action="/vote"' not in page and 'name="batch"' not in page
        assert page.count('data-check="signature"') == 3  # the checks are still shown for every batch


def test_export_and_search_of_the_global_library(network: Network) -> None:
    reviewer = network.reviewer()
    honest = batch_of(network, "P")
    member_c = network.writer("C")
    member_c.sync()  # C's yes accepts P's batch
    assert state_of(network, honest) == BatchState.ACCEPTED
    close_epoch_of(network)  # its epoch closes: the global library covers it
    app = create_app(reviewer, TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        rows = client.get("/library/export.json").json()
        assert sorted(r["text"] for r in rows) == sorted(HONEST)
        assert all(r["nodes"] == [network.accounts["P"].address] for r in rows)
        assert all(r["batches"][0]["id"] == honest and r["batches"][0]["state"] == "accepted" for r in rows)
        ranked = client.get("/library/export.json", params={"q": "how many legs do the animals have"}).json()
        assert ranked[0]["text"] == HONEST[0] and ranked[0]["score"] > ranked[1]["score"]
        assert client.get("/library/export.json", params={"domain": "general"}).json() == []
        assert client.get("/library/export.json", params={"round": "x"}).status_code == 400
        page = client.get("/library", params={"q": "units"}).text
        assert HONEST[1] in page.replace("&#39;", "'")


def test_status_shows_reachability_traffic_and_learning_plots(network: Network) -> None:
    member_a = network.writer("A")  # a node with its key that has synced: traffic to plot
    member_a.config.network = dataclasses.replace(member_a.config.network, node_dir=network.tmp / "A")
    run = network.tmp / "A" / "run"
    run.mkdir(parents=True)
    # per-batch rows in the learning loop's metrics.jsonl format (the plot reads only these two fields)
    rows = [{"mean_reward": r, "library_size": n} for r, n in ((0.2, 1), (0.4, 2), (0.5, 3))]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{cut by a crash\n")
    app = create_app(Reviewer(member_a), TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/status").text
        assert "reachable" in page and "a registry member" in page
        for name in ("accuracy", "bytes"):
            assert f'src="/plots/{name}.png"' in page
            png = client.get(f"/plots/{name}.png")
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and len(png.content) > 5000
        assert client.get("/plots/other.png").status_code == 404


# -- in a real browser ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(network: Network) -> Iterator[tuple[Network, str]]:
    port = _free_port()
    app = create_app(network.reviewer(), TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the reviewer page did not start"
        time.sleep(0.05)
    yield network, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Debian's chromium package is missing: make test installs it"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def _screenshot(page: object, name: str) -> None:
    folder = os.environ.get("DSO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_a_reviewer_approves_a_batch_in_the_browser_and_finds_it_in_the_global_library(
    served: tuple[Network, str], browser: object
) -> None:
    network, url = served
    honest = batch_of(network, "P")
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{url}/login?token={TOKEN}")
    assert page.url == f"{url}/"  # the token left the address bar
    card = page.locator(f'[data-batch="{honest}"]')
    for check in ("manifest", "signature", "records", "codes"):
        assert card.locator(f'[data-check="{check}"] .outcome').inner_text().lower() == "passed"
    assert HONEST[0] in card.inner_text()
    assert "1 yes, 0 no of 3 eligible" in " ".join(card.locator(".votes").inner_text().split())
    _screenshot(page, "pending")
    card.get_by_label("select").check()
    page.get_by_label("Key password").fill(PASSWORD)
    page.get_by_role("button", name="Approve selected").click()
    assert page.locator(".message").count() == 1, page.content()[:3000]
    assert "1 vote cast: approve" in page.locator(".message").inner_text()
    assert page.locator(f'[data-batch="{honest}"]').count() == 0  # accepted: no longer pending
    assert state_of(network, honest) == BatchState.ACCEPTED
    close_epoch_of(network)  # its epoch closes: the global library covers it
    page.get_by_role("link", name="Global library").click()
    page.get_by_label("Search by meaning").fill("legs of animals")
    page.get_by_role("button", name="Show").click()
    first = page.locator(".experience").first
    assert HONEST[0] in first.inner_text()
    first.locator("summary").click()
    assert honest[:18] in first.inner_text() and "accepted" in first.inner_text()
    _screenshot(page, "library")
    page.get_by_role("link", name="Status").click()
    assert "reachable" in page.locator(".status").inner_text()
    _screenshot(page, "status")
    assert dialogs == []


def test_a_tampered_batch_shows_its_failed_check_and_offers_no_approval(
    served: tuple[Network, str], browser: object
) -> None:
    network, url = served
    tampered = batch_of(network, "T")
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{url}/login?token={TOKEN}")
    card = page.locator(f'[data-batch="{tampered}"]')
    assert card.locator('[data-check="records"] .outcome').inner_text().lower() == "failed"
    assert "do not match the CID" in card.locator('[data-check="records"] .detail').inner_text()
    assert card.locator('[data-check="codes"] .outcome').inner_text().lower() == "not run"
    assert "cannot be approved" in card.inner_text()
    assert TAMPERED[0] not in card.inner_text()  # texts of a batch that failed are not shown
    # selecting it by mistake and pressing approve is refused, and nothing is cast
    card.get_by_label("select (reject only)").check()
    page.get_by_label("Key password").fill(PASSWORD)
    page.get_by_role("button", name="Approve selected").click()
    assert "cannot be approved" in page.locator(".error").inner_text()
    assert state_of(network, tampered) == BatchState.PENDING
    assert not RegistryClient(embedded_web3(), network.registry).has_voted(
        bytes.fromhex(tampered[2:]), network.reviewer_address
    )


def test_a_malicious_experience_text_renders_inert(served: tuple[Network, str], browser: object) -> None:
    network, url = served
    malicious = batch_of(network, "M")
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{url}/")
    card = page.locator(f'[data-batch="{malicious}"]')
    text = card.locator("td.text").inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown literally
    assert 'href="javascript:' in text
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("script").count() == 0
    assert page.locator("[onerror]").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    assert card.locator("td.flagged").count() == 1  # the guards flag it, too
    _screenshot(page, "malicious")
    assert dialogs == []


def test_every_page_reads_with_javascript_off(served: tuple[Network, str], browser: object) -> None:
    network, url = served
    context = browser.new_context(java_script_enabled=False)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{url}/")
    assert page.locator(f'[data-batch="{batch_of(network, "P")}"] td.text').count() == len(HONEST)
    page.get_by_role("link", name="Global library").click()
    assert "0 experiences" in page.locator("main").inner_text()  # nothing accepted yet
    page.get_by_role("link", name="Status").click()
    assert "reachable" in page.locator(".status").inner_text()
    context.close()


# -- `dso serve` as a process ----------------------------------------------------------------------


def _dso(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dso", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the system's openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_dso_serve_opens_a_node_read_only_on_a_real_chain(tmp_path: Path, anvil_url: str, tls: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": PASSWORD}
    made = _dso("node", "init", "--dir", str(tmp_path / "node"), "--rpc", anvil_url, "--json", env=env)
    assert made.returncode == 0, made.stderr
    node = json.loads(made.stdout)
    deployed = _dso("--config", node["config"], "chain", "deploy", "--member", node["address"], "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    port = _free_port()
    served_env = {k: v for k, v in env.items() if k != "DSO_KEY_PASSWORD"}  # no password: read-only
    served_env |= {"DSO_CHAIN_REGISTRY": json.loads(deployed.stdout)["address"], "DSO_SERVE_TOKEN": TOKEN}
    served = ["--port", str(port)]
    verify: bool | ssl.SSLContext = True
    if tls:
        cert, key = _self_signed(tmp_path)
        served += ["--tls-cert", str(cert), "--tls-key", str(key)]
        verify = ssl.create_default_context(cafile=str(cert))
    process = subprocess.Popen(
        [sys.executable, "-m", "dso", "--config", node["config"], "serve", *served],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=served_env,
    )
    try:
        url, deadline = f"{'https' if tls else 'http'}://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                page = httpx.get(f"{url}/", timeout=5, verify=verify)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "dso serve did not answer"
                time.sleep(0.3)
        assert page.status_code == 200 and node["address"] in page.text
        assert "No batch is waiting for votes" in page.text
        assert "server" not in page.headers  # no server banner
        assert httpx.get(f"{url}/status", timeout=30, verify=verify).status_code == 200
        login = httpx.get(f"{url}/login", params={"token": TOKEN}, timeout=5, verify=verify)
        assert login.status_code == 303 and "dso_session=" in login.headers["set-cookie"]
        assert TOKEN not in login.headers["set-cookie"]  # a session id, not the token
        assert ("secure" in login.headers["set-cookie"].lower()) is tls  # the cookie never goes out in clear
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"{url}/login?token={TOKEN}" in err  # the sign-in address is printed for the operator


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--host", "0.0.0.0"], "not a loopback address"),
        (["serve", "--host", "0.0.0.0", "--public"], "needs --tls-cert and --tls-key"),
        (["serve", "--tls-cert", "missing.pem"], "go together"),
        (["serve", "--tls-cert", "missing.pem", "--tls-key", "missing.key"], "not a readable file"),
        (["serve", "--port", "0"], "Invalid value"),
        (["--config", "node/dso.toml", "serve"], "embedded EVM"),
    ],
)
def test_dso_serve_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": PASSWORD}
    assert _dso("node", "init", "--dir", str(tmp_path / "node"), env=env).returncode == 0
    result = _dso(*args, env=env, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_sessions_live_on_the_server_expire_and_end_at_logout(network: Network) -> None:
    """The cookie is a random session id, not the token; logout revokes it on the server (a copy of the
    cookie no longer writes), and a session expires by the server's clock."""
    now = [1000.0]
    app = create_app(network.reviewer(), TOKEN, session_seconds=60, clock=lambda: now[0])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        csrf = signed_in(client)
        sid = client.cookies.get("dso_session")
        assert sid and TOKEN not in sid and len(sid) >= 40
        assert 'action="/logout"' in client.get("/").text
        assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        client.cookies.set("dso_session", sid)  # a copy of the old cookie, replayed
        assert client.post("/logout", data={"csrf": csrf}).status_code == 403
        assert 'action="/logout"' not in client.get("/").text
        csrf = signed_in(client)
        now[0] += 61  # past the session's lifetime
        assert client.post("/logout", data={"csrf": csrf}).status_code == 403
        assert csrf not in client.get("/").text


def test_requests_another_site_makes_a_browser_send_are_refused_before_any_work(network: Network) -> None:
    """An image or a form on another site pointing at the reviewer page: the browser marks it
    `Sec-Fetch-Site: cross-site` (or `same-site`), and the page refuses it without searching or fetching."""
    app = create_app(network.reviewer(), TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for site in ("cross-site", "same-site"):
            refused = client.get("/library?q=legs", headers={"sec-fetch-site": site})
            assert refused.status_code == 403 and "other sites" in refused.text
        assert client.get("/library?q=legs", headers={"sec-fetch-site": "same-origin"}).status_code == 200
        assert client.get("/library?q=legs", headers={"sec-fetch-site": "none"}).status_code == 200  # typed in


def test_the_pending_page_reviews_one_page_of_batches_at_a_time(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many batches are open, one page load fetches and checks at most one page of them."""
    from dso.web import review

    monkeypatch.setattr(review, "PENDING_PAGE", 2)
    reviewer = network.reviewer()
    reviewed: list[str] = []
    original = reviewer.node.review

    def counting(info: object) -> object:
        reviewed.append("0x" + info.id.hex())  # type: ignore[attr-defined]
        return original(info)  # type: ignore[arg-type]

    reviewer.node.review = counting  # type: ignore[method-assign]
    app = create_app(reviewer, TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        first = client.get("/").text
        assert "3 batches waiting for votes; page\n1 of 2" in first and 'href="/?page=2"' in first
        assert first.count('class="batch ') == 2 and len(reviewed) == 2
        second = client.get("/?page=2").text
        assert second.count('class="batch ') == 1 and 'href="/?page=1"' in second and len(reviewed) == 3
        assert client.get("/?page=99999999999").status_code == 200  # clamped to the last page
