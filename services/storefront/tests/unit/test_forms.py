from datetime import timedelta

import pytest
from storefront.entrypoints.deps import safe_next
from storefront.service_layer.checkout import CheckoutError, CheckoutForm
from storefront.service_layer.sessions import Sessions

KEY = "0" * 32
ADDRESS = {"name": "Kim", "line1": "1 Main", "city": "Seoul", "postal_code": "04524",
           "country": "KR"}


def test_checkout_form_takes_a_saved_address_or_a_complete_new_one() -> None:
    saved = CheckoutForm.parse({"checkout_key": KEY, "address_id": "a1",
                                "card_number": "4242 4242 4242 4242"})
    assert (saved.address_id, saved.card_number) == ("a1", "4242424242424242")
    new = CheckoutForm.parse({"checkout_key": KEY, "address_id": "new",
                              "card_number": "4242424242424242", **ADDRESS})
    assert new.address_id is None and new.address["city"] == "Seoul"
    with pytest.raises(CheckoutError) as missing:
        CheckoutForm.parse({"checkout_key": KEY, "card_number": "4242424242424242",
                            **{**ADDRESS, "city": " "}})
    assert missing.value.field == "city"


@pytest.mark.parametrize("form", [
    {"checkout_key": "not-a-key", "address_id": "a1", "card_number": "4242424242424242"},
    {"checkout_key": KEY, "address_id": "a1", "card_number": "4242424242424241"},
    {"checkout_key": KEY, "address_id": "a1", "card_number": ""}])
def test_a_bad_key_or_card_is_refused_before_any_call(form: dict[str, str]) -> None:
    with pytest.raises(CheckoutError):
        CheckoutForm.parse(form)


def test_next_urls_stay_on_this_site() -> None:
    assert safe_next("/cart") == "/cart"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", "", None):
        assert safe_next(bad) == "/"


def test_csrf_tokens_belong_to_one_cookie_and_a_new_browser_has_none() -> None:
    sessions = Sessions(lambda: None, None, secret=b"k" * 32,  # type: ignore[arg-type]
                        idle=timedelta(days=1))
    fresh = sessions.new_visitor()
    assert not sessions.csrf_ok(fresh, fresh.csrf)  # no cookie yet: no form of ours
    returning = type(fresh)(cookie=fresh.cookie, csrf=fresh.csrf, fresh_cookie=False)
    assert sessions.csrf_ok(returning, fresh.csrf)
    assert not sessions.csrf_ok(returning, sessions.new_visitor().csrf)
    assert not sessions.csrf_ok(returning, None)
    other_secret = Sessions(lambda: None, None, secret=b"j" * 32,  # type: ignore[arg-type]
                            idle=timedelta(days=1))
    assert other_secret.csrf_for(fresh.cookie) != fresh.csrf


def test_sign_in_sends_identity_an_s256_challenge_of_a_fresh_verifier_and_the_state() -> None:
    from urllib.parse import parse_qs, urlsplit

    from storefront.adapters.identity import authorize_url, new_verifier, s256

    # RFC 7636 appendix B.
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    verifier = new_verifier()
    assert 43 <= len(verifier) <= 128 and verifier != new_verifier()
    url = urlsplit(authorize_url(client_id="storefront", state="st-1", verifier=verifier,
                                 redirect_uri="http://localhost:8080/auth/callback"))
    assert url.path == "/api/identity/authorize" and not url.netloc
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query == {"response_type": "code", "client_id": "storefront", "state": "st-1",
                     "redirect_uri": "http://localhost:8080/auth/callback",
                     "code_challenge": s256(verifier), "code_challenge_method": "S256"}
    assert verifier not in url.query
