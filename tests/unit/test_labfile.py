"""Lab files, read and checked without root: every error names its place, and nothing else.

The contract's demo file must be accepted as written; each broken file must
be refused with a LabFileError whose message names the file, the line, the
place in the file and what would be valid. The shipped JSON Schema (what
editors check a file against) must agree with the command line: an
independent evaluator of the JSON Schema rules below judges every
document, and pytest-netns's verdict must match it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_netns.errors import InvalidTopologyError, LabFileError, NetnsError
from pytest_netns.labs import labfile
from pytest_netns.labs.schema import Schema, Violation, format_path

DEMO = """\
name: demo
nodes:
  client: {}
  server: {}
  r1: {kind: router}
switches:
  lan: {subnet: 10.201.1.0/24}
  dmz: {subnet: 10.201.2.0/24}
links:
  - endpoints: [client, lan]
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [server, dmz]
    ip: {server: 10.201.2.10}
"""
FULL = """\
name: lbfull
backend: namespace
image: pytest-netns/busybox:1
nodes:
  client:
    aliases: [laptop]
    env: {MODE: test, PORT: 8080}
  web:
    command: busybox httpd -f -p 80
    routes:
      - {dst: 10.9.0.0/16, via: 10.220.2.1}
  db:
    command: [busybox, nc, -ll, -p, "5432", -e, busybox, cat]
    backend: namespace
  r1:
    kind: router
    nat: {subnet: 10.220.9.0/30}
switches:
  lan: {subnet: 10.220.1.0/24}
  dmz:
links:
  - endpoints: [client, lan]
    iface: {client: lan0}
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [web, dmz]
  - endpoints: [web, db]
    subnet: 10.220.3.0/30
    ip: {web: 10.220.3.1, db: 10.220.3.2/30}
  - endpoints: [client, host]
  - endpoints: [db]
    kind: veth
    ip: {db: 172.16.0.10/24}
expect:
  - {from: client, to: web, tcp: 80}
  - {from: [client, r1], to: db, reach: false}
  - {from: web, to: db, udp: 53, reach: false}
  - {from: client, to: host}
"""


def parse(text: str, file: str = "lab.yaml") -> labfile.LabSpec:
    return labfile.parse(text, file)


def refused(text: str, file: str = "lab.yaml") -> LabFileError:
    with pytest.raises(LabFileError) as info:
        parse(text, file)
    message = str(info.value)
    assert "\n" not in message, message  # one paragraph
    return info.value


# -- accepted files ----------------------------------------------------------------------


def test_the_contract_demo_file_is_accepted_as_written() -> None:
    spec = parse(DEMO, "demo.yaml")
    assert spec.name == "demo"
    assert list(spec.nodes) == ["client", "server", "r1"]
    assert spec.nodes["r1"].kind == "router" and spec.nodes["client"].kind == "node"
    assert {n: s.subnet for n, s in spec.switches.items()} == {"lan": "10.201.1.0/24",
                                                              "dmz": "10.201.2.0/24"}
    assert [link.endpoints for link in spec.links] == [
        ("client", "lan"), ("r1", "lan"), ("r1", "dmz"), ("server", "dmz")]
    assert spec.links[3].ip == {"server": "10.201.2.10"}


def test_everything_the_builder_can_do_can_be_written() -> None:
    spec = parse(FULL)
    assert spec.backend == "namespace" and spec.image == "pytest-netns/busybox:1"
    client, web, db, r1 = (spec.nodes[n] for n in ("client", "web", "db", "r1"))
    assert client.aliases == ("laptop",) and client.env == {"MODE": "test", "PORT": "8080"}
    assert web.command == "busybox httpd -f -p 80"
    assert web.routes == (labfile.Route("10.9.0.0/16", "10.220.2.1"),)
    assert db.command == ("busybox", "nc", "-ll", "-p", "5432", "-e", "busybox", "cat")
    assert r1.nat == labfile.Nat("10.220.9.0/30", None, False)
    assert spec.switches["dmz"].subnet is None
    assert spec.links[0].iface == {"client": "lan0"}
    assert spec.links[6].kind == "veth" and spec.links[6].endpoints == ("db",)
    assert [(e.src, e.dst, e.reach, e.service) for e in spec.expect] == [
        ("client", "web", True, "tcp/80"), ("client", "db", False, "icmp"),
        ("r1", "db", False, "icmp"), ("web", "db", False, "udp/53"),
        ("client", "host", True, "icmp")]
    assert [e.place for e in spec.expect] == ["expect[0]", "expect[1]", "expect[1]",
                                              "expect[2]", "expect[3]"]


def test_json_is_read_like_yaml() -> None:
    from_json = parse(json.dumps(yaml.safe_load(FULL)), "lab.json")
    assert from_json._replace(file="lab.yaml") == parse(FULL, "lab.yaml")


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = DEMO.replace("  client: {}\n", "  client: &base {image: pytest-netns/busybox:1}\n") \
        .replace("  server: {}\n", "  server: {<<: *base, aliases: [srv]}\n")
    spec = parse(text)
    assert spec.nodes["server"].image == "pytest-netns/busybox:1"
    assert spec.nodes["server"].aliases == ("srv",)


def test_a_node_with_no_settings_may_be_empty() -> None:
    spec = parse(DEMO.replace("  client: {}", "  client:"))
    assert spec.nodes["client"].kind == "node"


def test_the_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(DEMO)
    assert labfile.load(path).file == str(path)
    with pytest.raises(LabFileError, match=r"missing\.yaml: cannot read the lab file"):
        labfile.load(tmp_path / "missing.yaml")
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(LabFileError, match="not UTF-8"):
        labfile.load(path)


# -- refused files: the place, the line, what would be valid ----------------------------------

BROKEN = [
    pytest.param(  # the contract's own example of a message
        DEMO.replace("[server, dmz]", "[server, nowhere]"), 13,
        "links[3].endpoints[1]: no node or switch named 'nowhere'; "
        "known: client, lan, r1, dmz, server", id="unknown-node"),
    pytest.param(DEMO.replace("10.201.2.10", "10.201.2.300"), 14,
                 "links[3].ip.server: invalid address '10.201.2.300'", id="bad-address"),
    pytest.param(DEMO.replace("10.201.2.10", "10.201.3.10"), 14,
                 "links[3].ip.server: 10.201.3.10 is not a host address of 10.201.2.0/24 "
                 "(switches.dmz.subnet): pick one in 10.201.2.1-10.201.2.254",
                 id="address-outside-subnet"),
    pytest.param(DEMO.replace("10.201.2.10", "10.201.2.255"), 14,
                 "not a host address of 10.201.2.0/24", id="broadcast-address"),
    pytest.param(DEMO.replace("dmz: {subnet: 10.201.2.0/24}", "dmz: {subnet: 10.201.1.128/25}")
                 .replace("    ip: {server: 10.201.2.10}\n", ""), 8,
                 "switches.dmz.subnet: 10.201.1.128/25 overlaps 10.201.1.0/24 "
                 "(switches.lan.subnet), and both reach 'r1'", id="overlapping-subnets"),
    pytest.param(DEMO.replace("r1: {kind: router}", "r1: {kind: router, imgae: x}"), 5,
                 "nodes.r1.imgae: unknown key 'imgae' (did you mean 'image'?); valid here: "
                 "kind, image, command", id="unknown-key"),
    pytest.param(DEMO.replace("name: demo", "name: demo\nlinkz: []"), 2,
                 "linkz: unknown key 'linkz' (did you mean 'links'?)", id="unknown-top-key"),
    pytest.param(DEMO.replace("{subnet: 10.201.1.0/24}", "{subnet: 24}"), 7,
                 "switches.lan.subnet: expected an IPv4 subnet in CIDR notation, such as "
                 "10.201.1.0/24, got the number 24", id="wrong-type"),
    pytest.param(DEMO.replace("- endpoints: [client, lan]", "- endpoints: client"), 10,
                 "links[0].endpoints: expected a list of one or two names", id="not-a-list"),
    pytest.param(DEMO.replace("r1: {kind: router}", "r1: {kind: ruoter}"), 5,
                 "nodes.r1.kind: 'ruoter' is not one of: node, router (did you mean 'router'?)",
                 id="bad-kind"),
    pytest.param(DEMO.replace("[client, lan]", "[client, no]"), 10,
                 "links[0].endpoints[1]: expected a node or switch name, or host (the root "
                 "namespace), got false (YAML reads", id="yaml-boolean"),
    pytest.param(DEMO.replace("name: demo", "name: demo\nname: other"), 2,
                 "key 'name' is given twice here (line 1 and line 2)", id="duplicate-key"),
    pytest.param(DEMO.replace("name: demo\n", ""), 1, "(the file): 'name' is missing",
                 id="missing-name"),
    pytest.param(DEMO.replace("name: demo", "name: my lab"), 1,
                 "name: 'my lab' is not a name of letters, digits", id="bad-name"),
    pytest.param(DEMO + "  - endpoints: [client, lan]\n", 15,
                 "links[4].endpoints: 'client' is already on 'lan' (links[0])", id="joined-twice"),
    pytest.param(DEMO + "  - endpoints: [lan, dmz]\n", 15,
                 "links[4].endpoints: 'lan' and 'dmz' cannot be linked", id="switch-to-switch"),
    pytest.param(DEMO + "  - endpoints: [client, client]\n", 15,
                 "links[4].endpoints: 'client' is linked to itself", id="self-link"),
    pytest.param(DEMO.replace("ip: {server: 10.201.2.10}", "ip: {dmz: 10.201.2.10}"), 14,
                 "links[3].ip.dmz: a switch port carries no address: give the address of "
                 "'server'", id="switch-address"),
    pytest.param(DEMO.replace("ip: {server: 10.201.2.10}", "ip: {client: 10.201.2.10}"), 14,
                 "links[3].ip.client: 'client' is not an endpoint of this link (its endpoints: "
                 "server, dmz)", id="address-of-other-node"),
    pytest.param(DEMO.replace("ip: {server: 10.201.2.10}", "ip: {server: 10.201.2.10/16}"),
                 14, "links[3].ip.server: /16 does not match the subnet 10.201.2.0/24",
                 id="address-prefix"),
    pytest.param(DEMO.replace("  dmz: {subnet: 10.201.2.0/24}", "  dmz: {}"), 14,
                 "links[3].ip.server: 10.201.2.10 is pinned, but switches.dmz.subnet is not "
                 "given", id="pin-without-subnet"),
    pytest.param(DEMO.replace("{subnet: 10.201.1.0/24}", "{subnet: 10.201.1.0/31}"), 7,
                 "switches.lan.subnet: subnet '10.201.1.0/31' has room for 0 host address(es)",
                 id="subnet-too-small"),
    pytest.param(DEMO.replace("{subnet: 10.201.1.0/24}", "{subnet: 224.0.0.0/24}"), 7,
                 "switches.lan.subnet: subnet 224.0.0.0/24 overlaps 224.0.0.0/4 (multicast)",
                 id="multicast-subnet"),
    pytest.param(DEMO.replace("r1: {kind: router}", "r1: {kind: router, image: x}"), 5,
                 "nodes.r1.image: a router is a namespace of pytest-netns's own, which runs no "
                 "image or command: remove image", id="router-image"),
    pytest.param(DEMO.replace("client: {}", "client: {nat: true}"), 3,
                 "nodes.client.nat: only a router masquerades", id="nat-on-node"),
    pytest.param(DEMO.replace("client: {}", "client: {attach: web1, image: x}"), 3,
                 "nodes.client.image: an attached container keeps its own image",
                 id="attach-image"),
    pytest.param(DEMO.replace("switches:", "  lan: {}\nswitches:"), 8,
                 "switches.lan: 'lan' is also a node", id="node-and-switch"),
    pytest.param(DEMO.replace("  dmz: {subnet: 10.201.2.0/24}\n",
                              "  dmz: {subnet: 10.201.2.0/24}\n  spare: {}\n"), 9,
                 "switches.spare: no link connects anything to this switch", id="empty-switch"),
    pytest.param(DEMO.replace("  client: {}", "  client: {aliases: [server]}"), 3,
                 "nodes.client.aliases[0]: 'server' is already the name or an alias at "
                 "nodes.server", id="alias-clash"),
    pytest.param(DEMO + "    iface: {server: eth1, dmz: p0}\n", 15,
                 "links[3].iface.dmz: a switch port carries no name", id="switch-iface"),
    pytest.param(DEMO + "    iface: {server: averyveryverylongname}\n", 15,
                 "links[3].iface.server: 'averyveryverylongname' is not an interface name of "
                 "at most 15", id="long-iface"),
    pytest.param(DEMO + "    iface: {server: lo}\n", 15,
                 "links[3].iface.server: interface name 'lo' cannot be created", id="lo-iface"),
    pytest.param(DEMO + "  - endpoints: [client, server]\n    subnet: 8.8.8.0/30\n"
                 "  - endpoints: [client, host]\n    subnet: 8.8.4.0/30\n", 18,
                 "links[5].subnet: subnet 8.8.4.0/30 is public address space", id="public-host"),
    pytest.param(DEMO + "  - endpoints: [client, server]\n    subnet: 10.201.1.0/30\n", 16,
                 "links[4].subnet: 10.201.1.0/30 overlaps 10.201.1.0/24 (switches.lan.subnet), "
                 "and both reach 'client'", id="link-overlaps-switch"),
    pytest.param(DEMO + "  - endpoints: [server, lan]\n    subnet: 10.9.0.0/24\n", 16,
                 "links[4].subnet: the subnet of a switch is set on the switch: move it to "
                 "switches.lan.subnet", id="link-subnet-on-switch"),
    pytest.param(DEMO + "  - endpoints: [lan]\n", 15,
                 "links[4].endpoints: a link with one endpoint is a guest-only NIC",
                 id="stub-on-switch"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: nobody}\n", 16,
                 "expect[0].to: no node named 'nobody'; known nodes: client, server, r1",
                 id="expect-unknown"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: lan}\n", 16,
                 "expect[0].to: 'lan' is a switch, which has no address", id="expect-switch"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: host}\n", 16,
                 "expect[0].to: the host has no link in this lab", id="expect-host"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: server, tcp: 80, udp: 80}\n", 16,
                 "expect[0]: give only one of tcp, udp", id="expect-two-protocols"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: server, tcp: 0}\n", 16,
                 "expect[0].tcp: the number 0 is out of range: expected a port number from 1 "
                 "to 65535", id="expect-port"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: server}\n"
                 "  - {from: [client], to: server, reach: false}\n", 17,
                 "expect[1]: client -> server (icmp) is expected unreachable here but reachable "
                 "at expect[0]", id="expect-contradiction"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: client}\n", 16,
                 "expect[0]: every pair here is a node with itself", id="expect-self"),
    pytest.param(DEMO + "expect:\n  - {from: client, to: server, family: 6}\n", 16,
                 "expect[0].family: IPv6 needs `ipv6: true`", id="expect-ipv6"),
    pytest.param(DEMO.replace("ip: {server: 10.201.2.10}", "ip6: {server: 'fd00::10'}"), 14,
                 "links[3].ip6: IPv6 needs `ipv6: true` at the top of the file", id="ip6-no-ipv6"),
    pytest.param(DEMO.replace("  client: {}", "  client:\n    routes: [{dst: default, via: x}]"),
                 4, "nodes.client.routes[0].via: invalid gateway 'x'", id="bad-route"),
    pytest.param(DEMO.replace("  client: {}", "  client: {env: {1X: y}}"), 3,
                 "nodes.client.env.1X: '1X' is not an environment variable name",
                 id="bad-env-name"),
    pytest.param(DEMO.replace("  client: {}", "  no: {}"), 3,
                 "nodes: the key false (YAML reads", id="yaml-boolean-key"),
    pytest.param("name: [demo\n", 2, "not valid YAML", id="bad-yaml"),
    pytest.param("", None, "lab.yaml: the file is empty", id="empty"),
    pytest.param("- just\n- a list\n", 1, "(the file): expected a lab", id="not-a-mapping"),
]


@pytest.mark.parametrize(("text", "line", "expected"), BROKEN)
def test_a_broken_file_is_refused_naming_the_place(text: str, line: int | None,
                                                   expected: str) -> None:
    error = refused(text)
    assert expected in str(error), str(error)
    assert error.line == line, str(error)
    if line is not None:
        assert str(error).startswith(f"lab.yaml:{line}: ")
    assert isinstance(error, NetnsError) and isinstance(error, InvalidTopologyError)


def test_json_errors_name_the_place_without_a_line() -> None:
    document = yaml.safe_load(DEMO)
    document["links"][3]["endpoints"][1] = "nowhere"
    error = refused(json.dumps(document), "lab.json")
    assert str(error) == ("lab.json: links[3].endpoints[1]: no node or switch named 'nowhere'; "
                          "known: client, lan, r1, dmz, server")
    error = refused('{"name": "demo", "name": "x", "nodes": {"a": {}}}', "lab.json")
    assert "key 'name' is given twice" in str(error)
    error = refused('{"name": "demo",\n "nodes": {', "lab.json")
    assert error.line == 2 and "not valid JSON" in str(error)


def test_a_document_from_code_is_checked_the_same_way() -> None:
    with pytest.raises(LabFileError, match=r"^nodes\.a\.kind: 'hub' is not one of"):
        labfile.from_document({"name": "x", "nodes": {"a": {"kind": "hub"}}})


# -- the shipped schema and the command line agree -----------------------------------------


def reference_valid(schema: dict[str, Any], root: dict[str, Any], value: Any) -> bool:
    """JSON Schema 2020-12, for the keywords the lab schema uses, written from the spec
    text and independently of pytest_netns.labs.schema."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return reference_valid(node, root, value)

    def is_type(t: str) -> bool:
        return {
            "null": value is None, "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "string": isinstance(value, str), "array": isinstance(value, list),
            "object": isinstance(value, dict),
        }[t]

    def equal(a: Any, b: Any) -> bool:
        return (type(a) is type(b) and a == b) or (
            not isinstance(a, bool) and not isinstance(b, bool)
            and isinstance(a, int | float) and isinstance(b, int | float) and a == b)

    checks = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks.append(any(is_type(t) for t in types))
    if "enum" in schema:
        checks.append(any(equal(value, v) for v in schema["enum"]))
    if "anyOf" in schema:
        checks.append(any(reference_valid(s, root, value) for s in schema["anyOf"]))
    if "not" in schema:
        checks.append(not reference_valid(schema["not"], root, value))
    if isinstance(value, str):
        checks.append(len(value) >= schema.get("minLength", 0))
        checks.append(len(value) <= schema.get("maxLength", len(value)))
        if "pattern" in schema:
            checks.append(re.search(schema["pattern"], value) is not None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        checks.append(value >= schema.get("minimum", value))
        checks.append(value <= schema.get("maximum", value))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        checks.append(all(k in value for k in schema.get("required", [])))
        checks.append(len(value) >= schema.get("minProperties", 0))
        for key, item in value.items():
            if "propertyNames" in schema:
                checks.append(reference_valid(schema["propertyNames"], root, key))
            if key in props:
                checks.append(reference_valid(props[key], root, item))
            elif extra is False:
                checks.append(False)
            elif isinstance(extra, dict):
                checks.append(reference_valid(extra, root, item))
    if isinstance(value, list):
        checks.append(len(value) >= schema.get("minItems", 0))
        checks.append(len(value) <= schema.get("maxItems", len(value)))
        if "items" in schema:
            checks += [reference_valid(schema["items"], root, item) for item in value]
        if schema.get("uniqueItems"):
            checks.append(all(not equal(a, b) for i, a in enumerate(value)
                              for b in value[:i]))
    return all(checks)


def _variants() -> list[tuple[str, Any]]:
    """Documents around the demo and the full file: each one change away from a valid one."""
    base, full = yaml.safe_load(DEMO), yaml.safe_load(FULL)
    out: list[tuple[str, Any]] = [("demo", base), ("full", full)]

    def change(name: str, doc: Any, path: tuple[Any, ...], value: Any) -> None:
        doc = copy.deepcopy(doc)
        target = doc
        for part in path[:-1]:
            target = target[part]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        out.append((name, doc))

    for value in (None, 3, "", "a b", "x" * 64, "123", "ok-name_2", ["x"], True):
        change(f"name={value!r}", base, ("name",), value)
    for value in ("docker", "namespace", "auto", "podman", 1, None):
        change(f"backend={value!r}", base, ("backend",), value)
    for value in (True, "yes", 1):
        change(f"ipv6={value!r}", base, ("ipv6",), value)
    for value in ({}, [], None, {"a": {}}, {"a b": {}}):
        change(f"nodes={value!r}", base, ("nodes",), value)
    for key, value in (("kind", "router"), ("kind", "switch"), ("image", ""), ("image", 5),
                       ("command", []), ("command", ["a", 1]), ("command", "sleep 1"),
                       ("env", {"A": 1}), ("env", {"A": True}), ("env", {"a-b": "x"}),
                       ("aliases", ["a", "a"]), ("aliases", ["ok.name"]), ("aliases", "x"),
                       ("backend", "auto"), ("attach", ""), ("nat", "yes"), ("nat", {}),
                       ("nat", {"subnet": "10.0.0.0/30", "extra": 1}), ("routes", [{}]),
                       ("routes", [{"dst": "default", "via": "10.201.1.1"}]), ("color", 1)):
        change(f"node.{key}={value!r}", base, ("nodes", "client", key), value)
    for key, value in (("subnet", "10.0.0.0"), ("subnet", "10.0.0.0/24"), ("subnet6", 64),
                       ("vlan", 3)):
        change(f"switch.{key}={value!r}", base, ("switches", "lan", key), value)
    for key, value in (("endpoints", []), ("endpoints", ["a", "b", "c"]), ("endpoints", [1]),
                       ("endpoints", KeyError), ("ip", {"server": 10}), ("ip", ["x"]),
                       ("iface", {"server": "e" * 16}), ("kind", "dummy"), ("kind", "tap"),
                       ("impair", []), ("impair", {"delay": "20ms"}),
                       ("impair", {"delay": "soon"}), ("impair", {"loss": 101}),
                       ("impair", {"rate": 1.5}), ("impair", {"rate": "10mbit"}),
                       ("impair", [{"delay": 0.02, "direction": "server->dmz"}]),
                       ("impair", {"wobble": 1}), ("mtu", 1500)):
        change(f"link.{key}={value!r}", base, ("links", 3, key), value)
    for value in ({"from": "a"}, {"from": "a", "to": ["b"], "tcp": 80},
                  {"from": "a", "to": "b", "tcp": 80, "udp": 1}, {"from": [], "to": "b"},
                  {"from": "a", "to": "b", "tcp": 65536}, {"from": "a", "to": "b", "reach": 0},
                  {"from": "a", "to": "b", "family": 5}, {"from": "a", "to": "b", "family": 6.0},
                  {"from": "a", "to": "b", "family": True}, {"from": "a", "to": "b", "x": 1}):
        change(f"expect={value!r}", base, ("expect",), [value])
    change("links=null", base, ("links",), None)
    change("top-level extra", base, ("extra",), 1)
    return out


@pytest.mark.parametrize(("name", "document"), _variants(), ids=[n for n, _ in _variants()])
def test_the_shipped_schema_and_the_validator_agree(name: str, document: Any) -> None:
    """The schema's verdict (by an independent evaluator) is the structural verdict."""
    with open(labfile.SCHEMA_FILE) as f:
        shipped = json.load(f)
    editor_says = reference_valid(shipped, shipped, document)
    try:
        labfile.schema().check(document)
        ours = True
    except Violation:
        ours = False
    assert ours == editor_says, name
    if not editor_says:  # a file the editor flags is always refused, at a named place
        with pytest.raises(LabFileError, match=r"^[A-Za-z(]"):
            labfile.from_document(document)


def test_the_schema_names_the_semantic_checks_it_cannot_make() -> None:
    """Unknown names pass the schema (editors cannot know them) but not the validator."""
    document = yaml.safe_load(DEMO)
    document["links"][0]["endpoints"] = ["client", "nowhere"]
    with open(labfile.SCHEMA_FILE) as f:
        shipped = json.load(f)
    assert reference_valid(shipped, shipped, document)
    with pytest.raises(LabFileError, match="no node or switch named 'nowhere'"):
        labfile.from_document(document)


def test_the_schema_evaluator_refuses_keywords_it_does_not_check() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        Schema({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}})


def test_places_are_written_as_a_reader_writes_them() -> None:
    assert format_path(("links", 3, "endpoints", 1)) == "links[3].endpoints[1]"
    assert format_path(("nodes", "web-1", "env", "A.B")) == 'nodes.web-1.env["A.B"]'
    assert format_path(()) == ""
