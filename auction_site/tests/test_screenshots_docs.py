"""docs/screenshots/ pictures every page at both widths (`make screenshots`), and the README shows two."""

import re

from auction_site.urls import page_urlpatterns
from testsupport.servers import BASE_DIR

SCREENSHOTS = BASE_DIR / "docs" / "screenshots"


def test_every_page_has_a_desktop_and_a_phone_picture():
    wanted = {
        f"{pattern.name.removeprefix('page-')}-{width}.png"
        for pattern in page_urlpatterns
        for width in ("desktop", "phone")
    }

    missing = sorted(name for name in wanted if not (SCREENSHOTS / name).is_file())

    assert missing == [], "run `make screenshots`"


def test_the_readme_shows_two_of_them():
    shown = re.findall(r"!\[[^\]]+\]\((docs/screenshots/[\w-]+\.png)\)", (BASE_DIR / "README.md").read_text())

    assert len(shown) >= 2
    assert all((BASE_DIR / path).is_file() for path in shown)
