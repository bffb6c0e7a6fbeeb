"""A mistyped address gets the site's own page (DEBUG off, as in production); the API keeps its JSON."""

import pytest


@pytest.mark.django_db
def test_an_unknown_page_is_the_site_s_own_404_with_its_navigation(client, settings):
    settings.DEBUG = False

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Page not found</h1>" in html
    assert "There is no page at <code>/no-such-page/</code>" in html
    assert '<a href="/">See all lots</a>' in html
    assert 'class="site-header"' in html


@pytest.mark.django_db
def test_an_unknown_api_path_still_answers_json(client, settings):
    settings.DEBUG = False

    response = client.get("/api/no-such-endpoint/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
