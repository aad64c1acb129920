"""Tenant-given URLs never reach internal addresses, however they are written."""

import pytest

from bai_platform.destinations import (
    DestinationRefused,
    Resolver,
    check_destination,
    literal_address,
    without_credentials,
)


def resolving_to(*addresses: str) -> Resolver:
    """A resolver that answers every name with ``addresses``."""

    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:5678/webhook",
        "http://2130706433/",  # 127.0.0.1 in decimal
        "http://0177.0.0.1/",  # octal
        "http://0x7f000001/",  # hex
        "http://127.1/",  # short
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata endpoint
        "http://100.64.0.1/",  # shared address space
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://224.0.0.1/",  # multicast
    ],
)
async def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        await check_destination(url)


async def test_a_name_resolving_to_any_internal_address_is_refused() -> None:
    resolver = resolving_to("93.184.216.34", "10.1.2.3")

    with pytest.raises(DestinationRefused, match="internal"):
        await check_destination("https://n8n.example.com/webhook", resolver=resolver)


async def test_a_name_resolving_only_to_public_addresses_passes() -> None:
    resolver = resolving_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")

    await check_destination("https://n8n.example.com/webhook", resolver=resolver)


async def test_a_public_literal_address_passes_without_resolving() -> None:
    await check_destination("https://93.184.216.34/hook", resolver=resolving_to())


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="cannot be resolved"):
        await check_destination("https://n8n.example.com/", resolver=resolving_to())


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/", "file:///etc/passwd", "http:///nohost"])
async def test_only_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(DestinationRefused, match="http"):
        await check_destination(url, allow_private=True)


async def test_private_destinations_pass_when_the_setting_allows_them() -> None:
    await check_destination("http://localhost:5678/webhook", allow_private=True)


def test_every_spelling_of_loopback_reads_as_the_same_address() -> None:
    spellings = ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f000001", "127.1"]

    assert {str(literal_address(s)) for s in spellings} == {"127.0.0.1"}
    assert literal_address("n8n.example.com") is None


def test_credentials_in_a_url_are_masked_when_it_is_shown() -> None:
    assert (
        without_credentials("https://ana:s3cret@n8n.example.com:5678/webhook?x=1")
        == "https://***@n8n.example.com:5678/webhook?x=1"
    )
    assert (
        without_credentials("https://n8n.example.com/webhook") == "https://n8n.example.com/webhook"
    )


# --- IPv6 forms that carry an IPv4 address ------------------------------------------------
# Python 3.11's ``is_global`` is True for most of these whatever IPv4 address they carry, and
# a NAT64 gateway, a 6to4 relay or a dual-stack socket delivers them to that IPv4 address.

EMBEDDING_INTERNAL = [
    pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("64:ff9b::a00:5", id="nat64-private"),
    pytest.param("64:ff9b:1::5db8:d70e", id="nat64-local-use-refused-outright"),
    pytest.param("2002:7f00:1::1", id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::1", id="6to4-metadata"),
    pytest.param("2002:c0a8:101::1", id="6to4-private"),
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", id="teredo-refused-outright"),
    pytest.param("2001:0:5db8:d70e:8000:63bf:a247:28f1", id="teredo-public-server-too"),
    pytest.param("::7f00:1", id="ipv4-compatible-loopback"),
    pytest.param("::a9fe:a9fe", id="ipv4-compatible-metadata"),
    pytest.param("::5db8:d70e", id="ipv4-compatible-public-deprecated-form"),
    pytest.param("::ffff:a00:1", id="ipv4-mapped-private"),
    pytest.param("::ffff:0:7f00:1", id="ipv4-translated-loopback"),
    pytest.param("::ffff:0:a9fe:a9fe", id="ipv4-translated-metadata"),
]

EMBEDDING_PUBLIC = [
    pytest.param("64:ff9b::5db8:d70e", id="nat64-public"),
    pytest.param("2002:5db8:d70e::1", id="6to4-public"),
    pytest.param("::ffff:5db8:d70e", id="ipv4-mapped-public"),
    pytest.param("2606:2800:220:1:248:1893:25c8:1946", id="native-ipv6-public"),
]


@pytest.mark.parametrize("address", EMBEDDING_INTERNAL)
async def test_an_ipv6_address_carrying_an_internal_ipv4_address_is_refused_as_written(
    address: str,
) -> None:
    with pytest.raises(DestinationRefused, match="internal"):
        await check_destination(f"https://[{address}]/hook", resolver=resolving_to())


@pytest.mark.parametrize("address", EMBEDDING_INTERNAL)
async def test_a_name_resolving_to_an_ipv6_address_carrying_an_internal_one_is_refused(
    address: str,
) -> None:
    resolver = resolving_to(address)

    with pytest.raises(DestinationRefused, match="internal"):
        await check_destination("https://n8n.example.com/webhook", resolver=resolver)


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
async def test_an_ipv6_address_carrying_a_public_ipv4_address_passes(address: str) -> None:
    await check_destination(f"https://[{address}]/hook", resolver=resolving_to())
    await check_destination("https://n8n.example.com/", resolver=resolving_to(address))
