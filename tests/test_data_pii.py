"""PII scrubbing: e-mails and public IPv4s replaced, private addresses and look-alikes untouched."""

from __future__ import annotations

import re

from smoledge.data.pii import EMAIL_PLACEHOLDER, IP_PLACEHOLDERS, scrub


def test_emails_replaced_keeping_sentence_punctuation():
    text = ("Écrivez à camille.martin@orange.fr. Or j_smith+news@mail.example.co.uk, "
            "then (ops-team@data-center.io)!")
    out, emails, ips = scrub(text)
    assert (emails, ips) == (3, 0)
    assert out == (f"Écrivez à {EMAIL_PLACEHOLDER}. Or {EMAIL_PLACEHOLDER}, then ({EMAIL_PLACEHOLDER})!")


def test_public_ips_replaced_private_ones_kept():
    text = ("Public 84.23.117.9 and 8.8.8.8. Private 192.168.1.20, 10.0.0.5, 172.16.4.1, "
            "loopback 127.0.0.1, link-local 169.254.3.3, shared 100.64.1.1.")
    out, emails, ips = scrub(text)
    assert (emails, ips) == (0, 2)
    for kept in ("192.168.1.20", "10.0.0.5", "172.16.4.1", "127.0.0.1", "169.254.3.3", "100.64.1.1"):
        assert kept in out
    assert "84.23.117.9" not in out and "8.8.8.8" not in out
    found = re.findall(r"Public (\S+) and (\S+)\.", out)[0]
    assert all(ip in IP_PLACEHOLDERS for ip in found)


def test_not_ips_and_idempotence():
    text = "Version 1.2.3.4.5 and 999.1.1.1 and 3.14 are not addresses; 2.5.1 neither."
    assert scrub(text) == (text, 0, 0)
    once, _, _ = scrub("Mail bob@example.org from 84.23.117.9.")
    assert scrub(once) == (once, 0, 0)  # placeholders are never counted or changed again


def test_same_address_always_same_placeholder():
    a, _, _ = scrub("server 203.0.113.77 and 84.23.117.9")
    b, _, _ = scrub("84.23.117.9 again")
    assert a.split()[-1] == b.split()[0]
    # Documentation range 203.0.113.0/24 is not global: kept.
    assert "203.0.113.77" in a
