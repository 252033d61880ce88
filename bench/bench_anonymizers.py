"""How well the snapshot's network flags see anonymizers, and how often they hit home users.

    python bench/bench_anonymizers.py [--snapshot FILE]

For well-known cloud and VPN operators (by AS number) it prints the share of each AS's IPv4
addresses flagged ``hosting`` or ``vpn``; for the large residential and mobile networks of
supported countries it prints the share flagged with anything that moves a decision
(hosting, vpn, proxy, tor, residential_proxy, anonymous: the false-flag rate, target
< 0.1 %), and which flag source set it. AS membership is the snapshot's own ``asn`` column,
so the figures are "of the addresses the snapshot attributes to the AS". Apple's iCloud
Private Relay ranges are checked to be ``relay`` and never ``vpn``.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot

CLOUD = {
    16509: "Amazon AWS",
    14618: "Amazon AWS (us-east)",
    15169: "Google",
    396982: "Google Cloud",
    8075: "Microsoft / Azure",
    31898: "Oracle Cloud",
    45102: "Alibaba Cloud",
    132203: "Tencent Cloud",
    14061: "DigitalOcean",
    16276: "OVH",
    24940: "Hetzner",
    63949: "Akamai Linode",
    20473: "Vultr (Choopa)",
    13335: "Cloudflare",
    51167: "Contabo",
}
VPN = {
    9009: "M247 (NordVPN, many VPNs)",
    60068: "Datacamp / CDN77 (many VPNs)",
    136787: "TEFINCOM (NordVPN)",
    209854: "Surfshark",
    212238: "Datacamp (VPN egress)",
    39351: "31173 Services (Mullvad)",
    62371: "Proton AG",
    147049: "PacketHub (NordVPN)",
}
RESIDENTIAL = {
    7922: ("US", "Comcast"),
    20115: ("US", "Charter"),
    7018: ("US", "AT&T"),
    701: ("US", "Verizon Fios"),
    6167: ("US", "Verizon Wireless"),
    21928: ("US", "T-Mobile US"),
    22773: ("US", "Cox"),
    2856: ("GB", "BT"),
    5607: ("GB", "Sky"),
    5089: ("GB", "Virgin Media"),
    12576: ("GB", "EE (mobile)"),
    3320: ("DE", "Deutsche Telekom"),
    3209: ("DE", "Vodafone DE"),
    6805: ("DE", "Telefonica DE (mobile)"),
    3215: ("FR", "Orange FR"),
    12322: ("FR", "Free"),
    15557: ("FR", "SFR"),
    5410: ("FR", "Bouygues"),
    4713: ("JP", "NTT OCN"),
    2516: ("JP", "KDDI"),
    17676: ("JP", "SoftBank"),
    55836: ("IN", "Reliance Jio (mobile)"),
    24560: ("IN", "Bharti Airtel"),
    28573: ("BR", "Claro BR"),
    26599: ("BR", "Vivo"),
    3352: ("ES", "Telefonica ES"),
    3269: ("IT", "TIM"),
    812: ("CA", "Rogers"),
    577: ("CA", "Bell Canada"),
    1221: ("AU", "Telstra"),
    4766: ("KR", "Korea Telecom"),
    9299: ("PH", "PLDT"),
    7552: ("VN", "Viettel"),
    8151: ("MX", "Telmex"),
}
MOVING = int(
    NetworkFlag.HOSTING
    | NetworkFlag.VPN
    | NetworkFlag.PROXY
    | NetworkFlag.TOR
    | NetworkFlag.RESIDENTIAL_PROXY
    | NetworkFlag.ANONYMOUS
)
RELAY_LIST = (
    Path(__file__).resolve().parents[1]
    / "src/geogate/intel/data/x4bnet/icloud-private-relay-ipv4.txt"
)


def _v4_sizes(snap: Snapshot) -> npt.NDArray[np.int64]:
    starts = snap.v4_starts.astype(np.int64)
    return np.diff(np.append(starts, np.int64(1 << 32)))


def _share(mask: npt.NDArray[np.bool_], sizes: npt.NDArray[np.int64]) -> float:
    total = int(sizes.sum())
    return float(sizes[mask].sum()) / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, default=None)
    args = parser.parse_args()
    snap = Snapshot.load(args.snapshot) if args.snapshot else Snapshot.embedded()
    n4 = snap.n4
    sizes = _v4_sizes(snap)
    asn = snap.asn[:n4]
    flags = snap.flags[:n4].astype(np.int64)
    src = snap.column("flags_src")[:n4].astype(np.int64)
    names = [s.name for s in snap.meta.sources]

    print("| operator | AS | IPv4 addresses | hosting or vpn | vpn |")
    print("|---|---|---|---|---|")
    for table in (CLOUD, VPN):
        for number, label in table.items():
            sel = asn == number
            if not sel.any():
                print(f"| {label} | {number} | 0 | - | - |")
                continue
            sz = sizes[sel]
            f = flags[sel]
            hv = (f & int(NetworkFlag.HOSTING | NetworkFlag.VPN)) != 0
            print(
                f"| {label} | {number} | {int(sz.sum()):,} | {100 * _share(hv, sz):.1f} % "
                f"| {100 * _share((f & int(NetworkFlag.VPN)) != 0, sz):.1f} % |"
            )

    print()
    print("| country | network | AS | IPv4 addresses | flagged | by |")
    print("|---|---|---|---|---|---|")
    all_sz = 0
    all_flagged = 0
    for number, (cc, label) in RESIDENTIAL.items():
        sel = asn == number
        sz = sizes[sel]
        f = flags[sel]
        hit = (f & MOVING) != 0
        flagged = int(sz[hit].sum())
        all_sz += int(sz.sum())
        all_flagged += flagged
        by: dict[str, int] = {}
        for mask, weight in zip(src[sel][hit].tolist(), sz[hit].tolist(), strict=True):
            for i, n in enumerate(names):
                if mask >> i & 1:
                    by[n] = by.get(n, 0) + int(weight)
        who = ", ".join(f"{n} {w:,}" for n, w in sorted(by.items(), key=lambda x: -x[1]))
        share = 100 * flagged / int(sz.sum()) if int(sz.sum()) else 0.0
        print(
            f"| {cc} | {label} | {number} | {int(sz.sum()):,} | {share:.3f} % "
            f"({flagged:,}) | {who or '-'} |"
        )
    rate = 100 * all_flagged / all_sz if all_sz else 0.0
    print(f"\nall residential/mobile above: {all_flagged:,} of {all_sz:,} flagged = {rate:.4f} %")

    if RELAY_LIST.exists():
        relay = vpn = total = 0
        for line in RELAY_LIST.read_text().split():
            net = ipaddress.ip_network(line, strict=False)
            lo = int(net.network_address)
            hi = int(net.broadcast_address)
            keys = snap.locate_many_v4(np.array([lo, hi], dtype=np.uint32))
            ks = np.arange(int(keys[0]), int(keys[1]) + 1)
            fl = flags[ks]
            total += 1
            relay += int(bool(((fl & int(NetworkFlag.RELAY)) != 0).all()))
            vpn += int(bool(((fl & int(NetworkFlag.VPN)) != 0).any()))
        print(
            f"iCloud Private Relay: {relay} of {total} listed ranges wholly relay, "
            f"{vpn} with any vpn flag"
        )


if __name__ == "__main__":
    main()
