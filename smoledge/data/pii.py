"""Scrub personal data the way FineWeb does: e-mail addresses and public IPv4 addresses.

    from smoledge.data.pii import scrub
    scrub("Write to ana@sapo.pt, server 84.23.117.9, router 192.168.1.1")
    # -> ("Write to email@example.com, server 22.214.171.124, router 192.168.1.1", 1, 1)

E-mails become `email@example.com`. A public IPv4 becomes one of the
placeholder addresses FineWeb's data shows (datatrove's PII formatter picks
one at random; here the pick is a hash of the address, so the same page
always scrubs to the same text and exact dedup still sees copies as equal).
Private, loopback, link-local and other non-global addresses are not
personal data and stay as they are.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

EMAIL_PLACEHOLDER = "email@example.com"
IP_PLACEHOLDERS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)

# local@domain.tld; the domain needs a dot and a 2+ letter TLD, so a final
# sentence period is not swallowed.
EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Four octets not glued to more digits or dots-and-digits (version strings such as 1.2.3.4.5).
IPV4_RE = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")


def _is_public(ip: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip).is_global
    except ValueError:
        return False


def _placeholder_ip(ip: str) -> str:
    if ip in IP_PLACEHOLDERS:
        return ip
    digest = hashlib.sha256(ip.encode()).digest()
    return IP_PLACEHOLDERS[digest[0] % len(IP_PLACEHOLDERS)]


def scrub(text: str) -> tuple[str, int, int]:
    """(scrubbed text, e-mails replaced, public IPs replaced)."""
    emails = ips = 0

    def email(m: re.Match) -> str:
        nonlocal emails
        if m.group(0) != EMAIL_PLACEHOLDER:
            emails += 1
        return EMAIL_PLACEHOLDER

    def ip(m: re.Match) -> str:
        nonlocal ips
        addr = m.group(0)
        if not _is_public(addr) or addr in IP_PLACEHOLDERS:
            return addr
        ips += 1
        return _placeholder_ip(addr)

    text = EMAIL_RE.sub(email, text)
    text = IPV4_RE.sub(ip, text)
    return text, emails, ips
