"""Every instance's network: a namespace of its own, plugged into funclet's bridge.

Per platform (per host *slot*, see ``slots.py``): one bridge ``fcb<slot>`` holding the
gateway address of a subnet of its own, and one nftables table ``funclet_<slot>``:

- instances reach the outside through NAT (masquerade), as container runtimes give it;
- they never reach the host: what arrives from the bridge for the host itself is
  dropped, except the host ports the operator exposes (``gateway:PORT`` is DNAT'ed to
  ``127.0.0.1:PORT``; ``route_localnet`` is set on the bridge alone) and DNS when the
  host's resolver is on loopback;
- they never reach each other: bridge ports are isolated (no frame from one instance
  to another), and forwarding from a funclet bridge into any other is dropped;
- they cannot pass for each other: each port of the bridge is pinned to its address
  and MAC (a static set of every port's name . MAC . address in the ``bridge`` table),
  so a frame or ARP answer from a port with any other source is dropped — an instance
  forked from a snapshot holds CAP_NET_ADMIN over its own namespace while it sets it
  up, and one whose function tampered with that code could keep it.

Nothing else of the host changes. IPv4 forwarding is needed for NAT: when it was off,
funclet turns it on and adds a rule that forwards nothing but its bridges' traffic,
so the host's other traffic flows as before; the last funclet to stop turns it off
again. At start, a slot's leftovers from a killed funclet (bridge, table) are removed.

Per instance: ``allocate()`` gives it an address and the name of its veth's host end
(both follow from the address's place in the subnet, as does its MAC: ``port_of``);
its process unshares a network namespace and plugs itself in (``isolate.py``: a veth
pair, the host end an isolated port of the bridge, the other end ``eth0`` inside with
the address and a default route via the gateway), so the platform's process does no
netlink work per instance. This runs off the cold-start path, on instances started
ahead; ``release`` frees the address once the instance is gone.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from funclet.sandbox.slots import HostSlot

log = logging.getLogger(__name__)

HOST_NAME = "host.funclet.internal"  # the gateway, as instances see it
_SUBNET_PREFIX = 22  # 1,021 instances per platform
_BRIDGE_PREFIX = "fcb"
_VETH_PREFIX = "fcv"
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class NetworkUnavailable(RuntimeError):
    """This host cannot give instances a network of their own (no root, no nft, …)."""


@dataclass(frozen=True)
class Plug:
    """One instance's connection: the host end of its veth, its address and its MAC."""

    ifname: str
    address: str
    mac: str


def port_of(slot: int, subnet: ipaddress.IPv4Network, address: str) -> Plug:
    """The port an address of ``subnet`` is plugged in by: its veth's host end is named
    after the address's place in the subnet, its MAC is 02:fc and the address's bytes."""
    index = int(ipaddress.IPv4Address(address)) - int(subnet.network_address)
    mac = "02:fc:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
    return Plug(f"{_VETH_PREFIX}{slot}-{index}", address, mac)


class Network:
    """The bridge, the filter table and the instances' veths of one platform."""

    def __init__(self, slot: HostSlot, subnet: ipaddress.IPv4Network, exposed: tuple[int, ...],
                 dns: tuple[str, int] | None, files: Path) -> None:
        self.slot = slot
        self.subnet = subnet
        self.exposed = exposed
        self.dns = dns  # a loopback resolver, reached through the gateway
        self.bridge = f"{_BRIDGE_PREFIX}{slot.number}"
        self.table = f"funclet_{slot.number}"
        hosts = list(subnet.hosts())
        self.gateway = str(hosts[0])
        # Oldest freed first: an address is reused as late as possible (neighbour caches).
        self._free = collections.deque(str(h) for h in hosts[1:])
        self._bridge_index = 0
        self.hosts_file = files / "hosts"
        self.resolv_file = files / "resolv.conf" if dns is not None else None

    # -- set-up and tear-down ------------------------------------------------------------

    @classmethod
    def open(cls, slot: HostSlot, cidr: str, exposed: tuple[int, ...],
             dns_override: str | None, files: Path) -> Network:
        """Build this platform's bridge and table (leftovers of the slot removed first)."""
        import shutil

        if shutil.which("nft") is None:
            raise NetworkUnavailable("the nft command (Debian's nftables) is not installed")
        try:
            pool = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise NetworkUnavailable(f"network_cidr {cidr!r} is not a network: {exc}") from None
        if not isinstance(pool, ipaddress.IPv4Network) or pool.prefixlen > _SUBNET_PREFIX:
            raise NetworkUnavailable(f"network_cidr {cidr} must be IPv4 and /{_SUBNET_PREFIX} "
                                     "or larger")
        subnets = list(pool.subnets(new_prefix=_SUBNET_PREFIX))
        if slot.number >= len(subnets):
            raise NetworkUnavailable(f"network_cidr {cidr} has no subnet left for slot "
                                     f"{slot.number}")
        network = cls(slot, subnets[slot.number], exposed, _loopback_resolver(dns_override),
                      files)
        try:
            network._build()
        except (OSError, subprocess.CalledProcessError, ImportError) as exc:
            network.close()
            raise NetworkUnavailable(f"the instances' network could not be set up: {exc}") \
                from None
        return network

    def _build(self) -> None:
        from pyroute2 import IPRoute

        _remove_leftovers(self.bridge, self.table)
        taken = _routes_in_use(self.bridge)
        if any(self.subnet.overlaps(net) for net in taken):
            raise OSError(f"subnet {self.subnet} is already routed on this host "
                          "(set network_cidr to a free range)")
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.bridge, kind="bridge")
            index = ipr.link_lookup(ifname=self.bridge)[0]
            ipr.addr("add", index=index, address=self.gateway, prefixlen=self.subnet.prefixlen)
            ipr.link("set", index=index, state="up")
        self._bridge_index = index
        _sysctl(f"net/ipv4/conf/{self.bridge}/route_localnet", "1")
        with HostSlot.global_lock(self.slot.root):
            guard = _enable_forwarding(self.slot.root)
            _nft(self._ruleset(guard))
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text(
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{self.gateway}\t{HOST_NAME}\n")
        self.hosts_file.chmod(0o644)
        if self.resolv_file is not None:
            self.resolv_file.write_text(f"nameserver {self.gateway}\n")
            self.resolv_file.chmod(0o644)

    def _ruleset(self, guard: bool) -> str:
        br, gw, net = self.bridge, self.gateway, self.subnet
        dnat = [f'iifname "{br}" ip daddr {gw} tcp dport {port} dnat ip to 127.0.0.1:{port}'
                for port in self.exposed]
        if self.dns is not None:
            host, port = self.dns
            dnat += [f'iifname "{br}" ip daddr {gw} {proto} dport 53 dnat ip to {host}:{port}'
                     for proto in ("udp", "tcp")]
        # Forwarding was off before funclet: forward nothing but funclet's bridges' traffic.
        guard_rule = [f'iifname != "{_BRIDGE_PREFIX}*" oifname != "{_BRIDGE_PREFIX}*" drop'] \
            if guard else []
        lines = [
            f"table inet {self.table} {{",
            "  chain input {",
            "    type filter hook input priority filter; policy accept;",
            f'    iifname "{br}" ct state established,related accept',
            f'    iifname "{br}" ct status dnat accept',
            f'    iifname "{br}" drop',
            "  }",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f'    iifname "{br}" oifname "{_BRIDGE_PREFIX}*" drop',
            f'    iifname "{br}" accept',
            f'    oifname "{br}" ct state established,related accept',
            f'    oifname "{br}" drop',
            *(f"    {rule}" for rule in guard_rule),
            "  }",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            *(f"    {rule}" for rule in dnat),
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    ip saddr {net} oifname != "{br}" masquerade',
            "  }",
            "}",
        ]
        ports = ",\n    ".join(
            f'"{p.ifname}" . {p.mac} . {p.address}'
            for p in (port_of(self.slot.number, self.subnet, str(h))
                      for h in list(self.subnet.hosts())[1:]))
        veths = f"{_VETH_PREFIX}{self.slot.number}-*"
        lines += [
            f"table bridge {self.table} {{",
            "  set ports {",
            "    type ifname . ether_addr . ipv4_addr",
            f"    elements = {{ {ports} }}",
            "  }",
            "  chain prerouting {",
            "    type filter hook prerouting priority filter; policy accept;",
            f'    iifname "{veths}" ether type ip iifname . ether saddr . ip saddr != @ports '
            "counter drop",
            f'    iifname "{veths}" ether type arp iifname . ether saddr . arp saddr ip != '
            "@ports counter drop",
            f'    iifname "{veths}" ether type arp iifname . arp saddr ether . arp saddr ip != '
            "@ports counter drop",
            f'    iifname "{veths}" ether type != {{ ip, arp }} counter drop',
            "  }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Remove the bridge and the table; the last funclet out restores forwarding."""
        with contextlib.suppress(Exception):
            with HostSlot.global_lock(self.slot.root):
                _remove_leftovers(self.bridge, self.table)
                _restore_forwarding(self.slot.root, self.slot)

    # -- instances -----------------------------------------------------------------------

    def allocate(self) -> Plug:
        """An address and a veth name for one more instance (``OSError`` if none is left)."""
        if not self._free:
            raise OSError(f"no free address left in {self.subnet} for another instance")
        return port_of(self.slot.number, self.subnet, self._free.popleft())

    def plug_spec(self, plug: Plug) -> dict[str, object]:
        """What the instance needs to plug itself in (the ``plug`` of its sandbox spec)."""
        return {"ifname": plug.ifname, "address": plug.address, "mac": plug.mac,
                "prefixlen": self.subnet.prefixlen, "gateway": self.gateway,
                "bridgeIndex": self._bridge_index}

    def release(self, plug: Plug) -> None:
        """The instance is gone (its namespace, and so its veth, with it): free the address.
        Called once per plug."""
        self._free.append(plug.address)

    def summary(self) -> dict[str, object]:
        """What /healthz says of the instances' network."""
        return {"bridge": self.bridge, "subnet": str(self.subnet), "gateway": self.gateway,
                "hostName": HOST_NAME, "exposedHostPorts": list(self.exposed)}

    def describe(self) -> str:
        exposed = ", ".join(str(p) for p in self.exposed) or "none"
        return (f"bridge {self.bridge}, subnet {self.subnet}, NAT to the outside; host ports "
                f"exposed at {HOST_NAME}: {exposed}")


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True,
                   capture_output=True, timeout=30)


def _sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value)


def _remove_leftovers(bridge: str, table: str) -> None:
    """A slot's bridge and table, from this run or one that was killed."""
    for family in ("inet", "bridge"):
        subprocess.run(["nft", "delete", "table", family, table], capture_output=True,
                       timeout=30)
    subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], capture_output=True,
                   timeout=30)


def _routes_in_use(own_bridge: str) -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True, timeout=30).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if not parts or f"dev {own_bridge}" in line or parts[0] in ("default", "local",
                                                                     "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(parts[0], strict=False)
            if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0 and not (
                net.is_loopback
            ):
                nets.append(net)
    return nets


def _enable_forwarding(root: Path) -> bool:
    """Turn IPv4 forwarding on; True when funclet turned it on (now or in another run)."""
    marker = root / "ip_forward.was-off"
    if _IP_FORWARD.read_text().strip() == "0":
        marker.touch()
        _IP_FORWARD.write_text("1")
    return marker.exists()


def _restore_forwarding(root: Path, slot: HostSlot) -> None:
    marker = root / "ip_forward.was-off"
    if marker.exists() and not HostSlot.others_running(root, slot):
        _IP_FORWARD.write_text("0")
        marker.unlink()


def _loopback_resolver(override: str | None) -> tuple[str, int] | None:
    """The resolver instances must reach through the gateway: ``override``
    (``host[:port]``) or the host's first nameserver when it is on loopback (which an
    instance cannot reach itself). None: the host's resolv.conf works as it is."""
    candidates = [override] if override else []
    if not candidates:
        with contextlib.suppress(OSError):
            for line in Path("/etc/resolv.conf").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    candidates.append(parts[1])
                    break
    for candidate in candidates:
        host, _, port = candidate.rpartition(":") if candidate.count(":") == 1 else (
            candidate, "", "")
        try:
            address = ipaddress.ip_address(host or candidate)
        except ValueError:
            continue
        if address.version == 4 and (override or address.is_loopback):
            return str(address), int(port or 53)
    return None
